"""A recipe run treats everything it reads as data: cached state is never unpickled, a recipe imports
no code unless allowed, names from files never leave the output folder, and the stage cache key
covers the code and the model files a stage depends on."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import textwrap
from pathlib import Path

import polars as pl
import pytest

from calib.cli.main import main
from calib.io.errors import InputError
from calib.recipe import Recipe, RecipeError, dump_recipe, run_chain
from calib.recipe import cache as cache_module
from calib.recipe.cache import StageCache, source_fingerprint, stage_key, tree_digest
from calib.recipe.inputs import load_inputs
from calib.recipe.runner import clip_sets, export_clips
from calib.recipe.state import read_state
from calib.stages.base import make_stage
from tests.recipe.toys import recipe_dict, toy_scorer, toy_stages, write_data

ROOT = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    import calib.recipe.runner as runner

    monkeypatch.setattr(runner, "_default_scorer", lambda: toy_scorer)
    with toy_stages():
        data = write_data(tmp_path / "data")
        dump_recipe(recipe_dict(), data / "recipe.toml")  # t_bias learns
        yield data


def _learned_entry(out: Path) -> Path:
    entries = [p.parent for p in (out / ".cache" / "stages").glob("*/state")]
    assert len(entries) == 1
    return entries[0]


def test_a_planted_pickle_in_the_cache_is_never_loaded(setup, tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "pwned"
    payload = pickle.dumps({"share_": Payload(marker)})
    pickle.loads(payload)  # the payload is live: loading it leaves the marker
    assert marker.exists()
    marker.unlink()

    assert main(["run", str(setup / "recipe.toml"), "--out", str(out)]) == 0
    entry = _learned_entry(out)
    assert sorted(p.name for p in (entry / "state").iterdir()) == ["state.json"]
    for where in (entry / "state.joblib", entry / "state" / "state.joblib", out / "state" / "01-t_bias.joblib"):
        where.write_bytes(payload)  # where the old calib read (or wrote) learned state
    capsys.readouterr()
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out)]) == 0
    assert "[2/4] t_bias (t_bias): cached" in capsys.readouterr().out
    assert not marker.exists()
    assert read_state(out / "state" / "01-t_bias") == {"share_": {0: 0.75, 3: 0.25}}

    # a manifest pointing at a pickle, as the old calib wrote them: refused, never loaded
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["state"] = "state.joblib"
    (entry / "manifest.json").write_text(json.dumps(manifest))
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "calib run: error:" in err and "not a manifest this calib writes" in err and f"delete {entry}" in err
    assert not marker.exists()


def test_a_tampered_json_state_is_a_clear_error(setup, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out)]) == 0
    before = (out / "detections.parquet").read_bytes()
    state_file = _learned_entry(out) / "state" / "state.json"
    doc = json.loads(state_file.read_text())
    doc["attributes"]["share_"] = {"$pickle": "gASVKAAAAAAAAAB9lC4="}
    state_file.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{state_file}: attributes.share_: unknown tagged value ['$pickle']" in err
    assert "delete" in err and "Traceback" not in err
    assert (out / "detections.parquet").read_bytes() == before  # the failed run changed no output
    state_file.write_text("{")
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_a_manifest_cannot_point_outside_the_cache(setup, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out)]) == 0
    entry = _learned_entry(out)
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["tables"]["detections"] = "../../../../etc/passwd.parquet"
    (entry / "manifest.json").write_text(json.dumps(manifest))
    # the learned stage's entry is not the last one: make it the newest the run can resume from
    for other in (out / ".cache" / "stages").iterdir():
        if other != entry:
            shutil.rmtree(other)
    capsys.readouterr()
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out)]) == 2
    assert "is not a Parquet file inside the cache" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
FEATS = '''
import pathlib
from features import feature

pathlib.Path({marker!r}).write_text("imported")

@feature(default=False)
def evil_double_score(ctx):
    """Twice the raw score."""
    return 2 * ctx.score
'''


def test_a_recipe_imports_no_module_unless_allowed(setup, tmp_path, monkeypatch, capsys):
    import sys

    import features as F

    marker = tmp_path / "imported"
    (tmp_path / "evil_feats_test.py").write_text(FEATS.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    d = recipe_dict()
    d["stages"].insert(0, {"type": "rerank", "feature_modules": "evil_feats_test", "features": "score,evil_double_score",
                           "min_samples_leaf": 1, "n_estimators": 5, "num_threads": 1})
    dump_recipe(d, setup / "rerank.toml")
    out = tmp_path / "run"
    assert main(["run", str(setup / "rerank.toml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "rerank.toml: stages[0]: stage 'rerank' names the module 'evil_feats_test' to import" in err
    assert "--allow-import evil_feats_test" in err and "'calib.features' entry point" in err
    assert not marker.exists() and "evil_feats_test" not in sys.modules and not out.exists()
    try:
        assert main(["run", str(setup / "rerank.toml"), "--out", str(out), "--allow-import", "evil_feats_test",
                     "--quiet"]) == 0
        assert marker.exists()  # allowed: imported, and its feature used by the reranker
        assert not F.is_import_allowed("evil_feats_test")  # the permission was the command's only
    finally:
        F.unregister("evil_double_score")
        sys.modules.pop("evil_feats_test", None)


def test_the_rerank_stage_refuses_modules_named_in_its_parameters():
    import features as F

    stage = make_stage({"type": "rerank", "feature_modules": "evil_feats_never_test"})
    with pytest.raises(F.ImportNotAllowedError, match="the rerank stage's feature_modules"):
        stage.fit({})


# ----------------------------------------------------------------------------------------------
def _copy_sources(dest: Path) -> list[Path]:
    roots = []
    for pkg in ("calib", "features"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        roots.append(dest / pkg)
    return roots


def test_the_code_fingerprint_covers_every_module_of_calib_and_features(tmp_path):
    roots = _copy_sources(tmp_path)
    base = source_fingerprint(roots)
    assert base == source_fingerprint(_copy_sources(tmp_path / "again"))  # contents, not location
    (tmp_path / "calib" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "calib" / "__pycache__" / "render.cpython-311.pyc").write_bytes(b"compiled")
    assert source_fingerprint(roots) == base  # compiled caches are not the source
    for rel in ("calib/canvas/raster.py", "features/energy.py", "calib/recipes/decision-calibrated.toml"):
        f = tmp_path / rel
        original = f.read_bytes()
        f.write_bytes(original + b"\n# edited\n")
        assert source_fingerprint(roots) != base, rel
        f.write_bytes(original)
    assert source_fingerprint(roots) == base


def test_an_edited_dependency_recomputes_every_stage(setup, tmp_path, monkeypatch):
    recipe = Recipe.from_dict(recipe_dict())
    cache = StageCache(tmp_path / "cache")

    def chain():
        loaded = load_inputs(recipe, setup, cache_dir=cache.root)
        cache.remember(loaded.files)
        fit, _ = clip_sets(recipe, loaded.tables)
        return run_chain(recipe, loaded.tables, loaded.key, fit_clips=fit, cache=cache)

    assert not any(r.cached for r in chain().records)
    assert all(r.cached for r in chain().records)
    # what editing calib/canvas/raster.py (or any module of calib or features) does to the fingerprint
    monkeypatch.setattr(cache_module, "code_fingerprint", lambda: "another code base")
    assert not any(r.cached for r in chain().records)


def test_the_key_covers_the_model_folder_contents(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.lgb.txt").write_text("tree 1")
    (model / "reranker.json").write_text("{}")
    stage = make_stage({"type": "rerank", "model_dir": str(model)})
    key = stage_key("prev", stage, "fit")
    assert stage_key("prev", stage, "fit") == key
    (model / "model.lgb.txt").write_text("tree 2")  # same size, other contents
    edited = stage_key("prev", stage, "fit")
    assert edited != key
    (model / "sub").mkdir()
    (model / "sub" / "extra.txt").write_text("x")
    assert stage_key("prev", stage, "fit") not in (key, edited)
    assert tree_digest(tmp_path / "missing") == "missing"


def test_the_key_covers_the_feature_modules_a_stage_names(tmp_path, monkeypatch):
    import features as F

    (tmp_path / "keyfeats_test").mkdir()
    (tmp_path / "keyfeats_test" / "__init__.py").write_text("")
    helper = tmp_path / "keyfeats_test" / "helper.py"
    helper.write_text("SCALE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    stage = make_stage({"type": "rerank", "feature_modules": "keyfeats_test.feats"})
    with pytest.raises(F.ImportNotAllowedError):
        stage_key("prev", stage, "fit")
    with F.allowed_imports(["keyfeats_test"]):
        key = stage_key("prev", stage, "fit")
        helper.write_text("SCALE = 3\n")  # a module the feature module uses, in the same package
        assert stage_key("prev", stage, "fit") != key
    assert "keyfeats_test" not in __import__("sys").modules  # fingerprinted without importing


def test_cache_entries_follow_the_umask_and_are_never_world_writable(setup, tmp_path):
    recipe = Recipe.from_dict(recipe_dict())
    for umask in (0o022, 0o000):
        cache = StageCache(tmp_path / f"cache-{umask:o}")
        old = os.umask(umask)
        try:
            loaded = load_inputs(recipe, setup, cache_dir=cache.root)
            cache.remember(loaded.files)
            run_chain(recipe, loaded.tables, loaded.key, fit_clips=clip_sets(recipe, loaded.tables)[0], cache=cache)
        finally:
            os.umask(old)
        paths = list(cache.root.rglob("*"))
        assert any(p.name == "state.json" for p in paths) and any(p.parent.name == "inputs" for p in paths)
        for p in [cache.root, *paths]:
            mode = stat.S_IMODE(p.stat().st_mode)
            assert not mode & 0o002, (p, oct(mode))
            if umask == 0o022:
                assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))


# ----------------------------------------------------------------------------------------------
def test_export_refuses_clip_names_that_leave_the_folder_before_writing(tmp_path):
    from calib.tables import DETECTIONS

    row = dict(system="s", clip="ok", frame=0, det_id=0, class_id=0, score=0.5, distance=None, instance_id=None,
               points=[[dict(x=1.0, y=2.0, e=1.0)]], extra=None)
    out = tmp_path / "deep" / "out"
    for bad in ("../../escaped", "/tmp/abs_escaped", ".hidden", "a/b"):
        det = pl.DataFrame([row, {**row, "clip": bad, "det_id": 1}], schema=DETECTIONS)
        with pytest.raises(InputError, match=f"unsafe clip name {bad!r}.*nothing was written"):
            export_clips(det, out, ["ok"], max_bytes=None)
        with pytest.raises(InputError, match="the clip list: unsafe clip name"):
            export_clips(det.head(1), out, ["ok", bad], max_bytes=None)
    assert not out.exists() and not (tmp_path / "escaped.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_names_that_become_paths_are_checked_in_the_recipe(setup, tmp_path, monkeypatch, capsys):
    with pytest.raises(RecipeError, match=r"stages\[0\].name: '\.\./x': a stage name has no '/'"):
        Recipe.from_dict(recipe_dict(stages=[{"type": "t_add", "name": "../x"}]))
    with pytest.raises(RecipeError, match="inputs.systems: system name '../sys'"):
        Recipe.from_dict(recipe_dict(inputs={"gt": "gt", "systems": {"../sys": "systems/sysA"}}))
    # the default output folder is runs/<recipe name>: only for a name that is one path component
    d = recipe_dict(name="../../outside")
    dump_recipe(d, setup / "named.toml")
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(setup / "named.toml")]) == 2
    assert "cannot name the default output folder runs/<name>" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert main(["run", str(setup / "named.toml"), "--out", str(tmp_path / "o"), "--quiet"]) == 0


def test_a_recipe_built_in_code_with_an_unsafe_system_name_is_refused(setup, tmp_path):
    from calib.recipe.schema import Inputs

    recipe = Recipe.from_dict(recipe_dict())
    recipe.inputs = Inputs(systems={"../../sys": "systems/sysA"}, gt="gt")  # bypassing from_dict's check
    with pytest.raises(RecipeError, match="system name '../../sys' cannot name a file"):
        load_inputs(recipe, setup, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_the_input_key_is_the_same_hashed_on_threads_and_follows_every_byte(tmp_path):
    from calib.recipe.inputs import HASH_FILES_PER_THREAD, _files_key, digest
    from calib.constants import sha256_bytes
    from calib.score.parallel import scale_out

    files = []
    for i in range(3 * HASH_FILES_PER_THREAD):  # enough for 2 threads
        f = tmp_path / f"clip{i}.json"
        f.write_bytes(b'{"annotations": []}' + b" " * i)
        files.append((f.name, f))
    want = digest([[f.name, sha256_bytes(f.read_bytes())] for _, f in files])  # by hand, in order
    assert _files_key(files) == want
    with scale_out(2, quiet=True):
        assert _files_key(files) == want
        files[-1][1].write_bytes(b'{"annotations": [] }')
        assert _files_key(files) != want


def test_input_files_are_hashed_again_only_when_their_stat_signature_changes(tmp_path):
    """A warm re-run does not read its input files again to key them: a file's SHA-256 is kept in
    the cache folder's index under its stat signature (size, mtime, ctime, inode, device, mode).
    A digest found there under the file's current signature is used as is (a planted one shows the
    file was not read); an edit, even with size and mtime put back, moves the ctime: hashed again."""
    import os
    import time

    from calib.constants import sha256_bytes
    from calib.recipe.inputs import INPUT_DIGEST_INDEX, INPUT_DIGESTS, _files_key, digest
    from calib.score.cache import _read_index, _write_index, stat_signature

    f = tmp_path / "data" / "clip_a.json"
    f.parent.mkdir()
    f.write_bytes(b'{"annotations": []}')
    old = time.time_ns() - 10 * 10**9  # modified 10 s before it is hashed: not racy, remembered
    os.utime(f, ns=(old, old))
    index = tmp_path / "cache" / "inputs"
    files = [(f.name, f)]
    INPUT_DIGESTS.clear()
    assert _files_key(files, index) == digest([[f.name, sha256_bytes(f.read_bytes())]])
    assert _read_index(index / INPUT_DIGEST_INDEX)[os.path.abspath(f)] == (stat_signature(os.stat(f)),
                                                                          sha256_bytes(f.read_bytes()))
    INPUT_DIGESTS.clear()  # a new process, and an index that says otherwise for the same signature
    _write_index(index / INPUT_DIGEST_INDEX, {os.path.abspath(f): (stat_signature(os.stat(f)), "ab" * 32)})
    assert _files_key(files, index) == digest([[f.name, "ab" * 32]])
    f.write_bytes(b'{"annotations":[ ]}')  # the same size, then the old mtime put back
    os.utime(f, ns=(old, old))
    assert _files_key(files, index) == digest([[f.name, sha256_bytes(f.read_bytes())]])
    INPUT_DIGESTS.clear()
