"""calib.publish: outputs appear whole or not at all; the JSON they hold is strict JSON."""
from __future__ import annotations

import math
import os

import pytest

from calib.publish import json_safe, publish_staged, staging, write_atomic, write_json


def test_json_safe_and_write_json(tmp_path):
    obj = {"a": math.nan, 3: [1.5, math.inf, (-math.inf, "x")], "b": {"c": None}}
    assert json_safe(obj) == {"a": None, "3": [1.5, None, [None, "x"]], "b": {"c": None}}
    write_json(tmp_path / "m.json", {"p": math.nan, "path": tmp_path})
    assert (tmp_path / "m.json").read_text() == f'{{\n  "p": null,\n  "path": "{tmp_path}"\n}}\n'


def test_a_new_output_is_staged_beside_it_and_appears_only_when_published(tmp_path):
    out = tmp_path / "deep" / "out"
    with staging(out) as stage:
        assert stage.parent == out.parent and stage.name.startswith(".out.staging-") and not out.exists()
        (stage / "a.txt").write_text("new")
        (stage / "sub").mkdir()
        (stage / "sub" / "x.json").write_text("{}")
        assert publish_staged(stage, out) == ["a.txt", "sub"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # the staging folder is gone
    assert (out / "a.txt").read_text() == "new" and (out / "sub" / "x.json").exists()


def test_publishing_replaces_entries_whole_or_merges_files(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "old.json").write_text("old")
    (out / "keep.txt").write_text("kept")
    with staging(out) as stage:
        assert stage.parent == out  # an existing output folder stages inside itself
        (stage / "sub").mkdir()
        (stage / "sub" / "new.json").write_text("new")
        publish_staged(stage, out)
    assert sorted(p.name for p in (out / "sub").iterdir()) == ["new.json"]  # the folder was replaced whole
    assert (out / "keep.txt").read_text() == "kept" and not [p for p in out.iterdir() if p.name.startswith(".")]
    (out / "sub" / "other.json").write_text("other")
    with staging(out) as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "new.json").write_text("newer")
        assert publish_staged(stage, out, merge=True) == ["sub/new.json"]
    assert {p.name: p.read_text() for p in (out / "sub").iterdir()} == {"new.json": "newer", "other.json": "other"}


def test_a_failure_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staging(out) as stage:
            (stage / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "f.txt", lambda p: (p.write_text("half"), (_ for _ in ()).throw(RuntimeError())))
    assert list(tmp_path.iterdir()) == []
    final = write_atomic(tmp_path / "f.txt", lambda p: p.write_text("whole"))
    assert final.read_text() == "whole" and oct(os.stat(final).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_current_umask_reads_the_umask_without_changing_it(monkeypatch):
    """Read from /proc (no window where another thread's new file gets a wrong mode), and by
    setting it back at once where /proc is not there: the same value either way."""
    import builtins

    from calib.publish import current_umask

    before = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        real_open = builtins.open

        def no_proc(path, *a, **kw):
            if str(path).startswith("/proc/"):
                raise FileNotFoundError(path)
            return real_open(path, *a, **kw)

        monkeypatch.setattr(builtins, "open", no_proc)
        assert current_umask() == 0o027
        monkeypatch.undo()
        assert _umask() == 0o027  # left as it was
    finally:
        os.umask(before)
