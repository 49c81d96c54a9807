"""tests/data/golden.tar.xz: the golden vectors inside the project, byte for byte the shared copy
(../shared/golden, the source of truth), and rebuilt deterministically by tests/data/update_golden.py."""
from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_ARCHIVE = ROOT / "tests" / "data" / "golden.tar.xz"
SHARED = ROOT.parent / "shared" / "golden"


def _tool():
    spec = importlib.util.spec_from_file_location("update_golden", ROOT / "tests" / "data" / "update_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_archive_holds_exactly_the_shared_golden_bytes():
    if not SHARED.is_dir():
        pytest.skip("no ../shared/golden to compare with (a fresh clone: the archive is the copy)")
    tool = _tool()
    shared, archived = tool.source_files(SHARED), tool.archive_files(GOLDEN_ARCHIVE)
    assert sorted(archived) == sorted(shared), "files differ: run tests/data/update_golden.py"
    changed = [rel for rel in shared if archived[rel] != shared[rel]]
    assert not changed, f"contents differ: {changed[:5]}; run tests/data/update_golden.py"


def test_archive_has_every_golden_set(golden):
    assert (golden / "expected.json").is_file() and (golden / "coco-polar" / "pairs.json").is_file()
    for folder in ("gt", "sparse", "grid", "dense", "coco-polar/gt", "coco-polar/pred"):
        assert len(list((golden / folder).glob("*.json"))) == 3, folder


def test_archive_bytes_depend_only_on_the_files(tmp_path):
    tool = _tool()
    files = {"b/x.json": b'{"a": 1}', "a.json": b"[]", "b/c/y.json": b"{}"}
    data = tool.archive_bytes(files)
    assert tool.archive_bytes(dict(reversed(files.items()))) == data  # insertion order does not matter
    out = tmp_path / "g.tar.xz"
    tool.write_atomically(data, out)
    assert tool.archive_files(out) == files
    with tarfile.open(out, mode="r:xz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["golden", "golden/b", "golden/b/c", "golden/a.json", "golden/b/c/y.json",
                                         "golden/b/x.json"]
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    assert (tool.unpack(out, tmp_path / "u") / "b" / "c" / "y.json").read_bytes() == b"{}"


def test_update_script_rebuilds_the_same_archive_from_the_same_folder(tmp_path):
    tool = _tool()
    src = tmp_path / "src"
    (src / "gt").mkdir(parents=True)
    (src / "gt" / "a_std.json").write_bytes(b'{"annotations": []}')
    (src / "expected.json").write_bytes(b"{}")
    out = tmp_path / "golden.tar.xz"
    assert tool.main(["--source", str(src), "--out", str(out)]) == 0
    first = out.read_bytes()
    (src / "expected.json").touch()  # a new mtime changes nothing
    assert tool.main(["--source", str(src), "--out", str(out)]) == 0
    assert out.read_bytes() == first
    assert tool.main(["--source", str(tmp_path / "missing"), "--out", str(out)]) == 2
