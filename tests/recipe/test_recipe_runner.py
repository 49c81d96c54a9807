"""Running recipes: hand-computed stage outputs, fit on the fit clips only, the stage cache
(a changed late parameter re-runs only the later stages), outputs and failure behaviour."""
from __future__ import annotations

import json

import polars as pl
import pytest

from calib.io.dcase import load_annotations
from calib.recipe import Recipe, RecipeError, clip_sets, run_chain, run_recipe
from calib.recipe.address import set_values
from calib.recipe.cache import StageCache
from calib.recipe.inputs import load_inputs
from calib.recipe.state import read_state
from tests.recipe.toys import recipe_dict, toy_scorer, toy_stages, write_data

# add 0.25 -> + class share on the sony clips (class 0: 3/4, class 3: 1/4) -> x 0.5 -> round 3
EXPECTED = {("s1", 0): 0.75, ("s1", 1): 0.375, ("s2", 0): 0.875, ("t1", 0): 0.5, ("t2", 0): 0.188, ("t2", 1): 0.531}


@pytest.fixture()
def toys():
    with toy_stages() as t:
        yield t


@pytest.fixture()
def data(tmp_path):
    return write_data(tmp_path / "data")


def scores(det: pl.DataFrame) -> dict:
    return {(c, f): s for c, f, s in det.select("clip", "frame", "score").iter_rows()}


def chain(recipe: Recipe, data, cache=None, log=None):
    loaded = load_inputs(recipe, data, cache_dir=cache.root if cache else None)
    if cache:
        cache.remember(loaded.files)
    fit, _ = clip_sets(recipe, loaded.tables)
    return run_chain(recipe, loaded.tables, loaded.key, fit_clips=fit, cache=cache, log=log or (lambda s: None))


def test_stages_run_in_order_and_learning_stage_sees_only_fit_clips(toys, data):
    recipe = Recipe.from_dict(recipe_dict())
    res = chain(recipe, data)
    det = res.tables["detections"]
    assert scores(det) == pytest.approx(EXPECTED, abs=1e-12)
    assert det.get_column("score_raw").to_list() == [0.5, 0.25, 0.75, 0.5, 0.125, 0.0625]
    assert toys["t_bias"].fitted_on == ["s1", "s2"]
    assert toys["t_bias"].saw_truth_in_apply is False  # applied blind
    assert res.tables["truth"].height == 7  # truth travels on for later stages
    assert res.stages[1].share_ == {0: 0.75, 3: 0.25}
    assert [r.fit_clips for r in res.records] == [None, 2, None, None]


def test_fit_on_every_labeled_clip_when_no_split_named(toys, data):
    recipe = Recipe.from_dict(recipe_dict(splits={}))
    res = chain(recipe, data)
    # all 7 GT: class 0: 3, class 3: 3, class 5: 1
    assert res.stages[1].share_ == pytest.approx({0: 3 / 7, 3: 3 / 7, 5: 1 / 7})
    assert toys["t_bias"].fitted_on == ["s1", "s2", "t1", "t2"]


def test_unknown_split_is_named(toys, data):
    recipe = Recipe.from_dict(recipe_dict(splits={"fit": ["dev-train-tau"]}))
    loaded = load_inputs(recipe, data)
    with pytest.raises(RecipeError, match=r"splits.fit\[0\]: no GT split 'dev-train-tau'; the GT has dev-test-tau, dev-train-sony"):
        clip_sets(recipe, loaded.tables)


def test_missing_input_path_is_named(toys, tmp_path):
    recipe = Recipe.from_dict(recipe_dict())
    with pytest.raises(RecipeError, match="inputs.systems.sysA: input 'systems/sysA' not found"):
        load_inputs(recipe, tmp_path)


def test_changed_late_parameter_reruns_only_later_stages(toys, data, tmp_path):
    cache = StageCache(tmp_path / "cache")
    first = chain(Recipe.from_dict(recipe_dict()), data, cache)
    assert [r.cached for r in first.records] == [False, False, False, False]
    # each entry stores only what its stage changed (detections); truth and systems are referenced
    for entry in (tmp_path / "cache" / "stages").iterdir():
        assert sorted(p.name for p in entry.glob("*.parquet")) == ["detections.parquet"]
        manifest = json.loads((entry / "manifest.json").read_text())
        assert manifest["tables"]["truth"].startswith("inputs/truth-")
        assert manifest["tables"]["systems"]["sysA"].startswith("inputs/system-sysA-")
    counts = {n: c.applied for n, c in toys.items()}
    log: list[str] = []
    changed = Recipe.from_dict(set_values(recipe_dict(), {"stages.t_scale.factor": 1.0}))
    second = chain(changed, data, StageCache(tmp_path / "cache"), log.append)  # a new process's view
    assert [r.cached for r in second.records] == [True, True, False, False]
    assert toys["t_add"].applied == counts["t_add"] and toys["t_bias"].applied == counts["t_bias"]
    assert toys["t_scale"].applied == counts["t_scale"] + 1 and toys["t_round"].applied == counts["t_round"] + 1
    assert log[0] == "[1/4] t_add (t_add): cached" and log[1] == "[2/4] t_bias (t_bias): cached"
    assert log[2].startswith("[3/4] t_scale (t_scale): ")
    assert second.stages[1].share_ == {0: 0.75, 3: 0.25}  # learned state restored from the cache
    got = scores(second.tables["detections"])
    assert got == pytest.approx({k: round(2 * v, 3) for k, v in
                                 {("s1", 0): .75, ("s1", 1): .375, ("s2", 0): .875, ("t1", 0): .5,
                                  ("t2", 0): .1875, ("t2", 1): .53125}.items()}, abs=1e-12)
    # the result equals an uncached run of the changed recipe, column for column
    fresh = chain(changed, data)
    assert second.tables["detections"].equals(fresh.tables["detections"])


def test_cache_keys_follow_what_each_stage_depends_on(toys, data, tmp_path):
    cache = StageCache(tmp_path / "cache")
    chain(Recipe.from_dict(recipe_dict()), data, cache)
    same = chain(Recipe.from_dict(recipe_dict()), data, cache)
    assert all(r.cached for r in same.records)
    early = chain(Recipe.from_dict(set_values(recipe_dict(), {"stages.t_add.delta": 0.5})), data, cache)
    assert not any(r.cached for r in early.records)
    # another fit split: the stage before the learning one is reused, the rest re-run
    refit = chain(Recipe.from_dict(set_values(recipe_dict(), {"splits.fit": ["dev-test-tau"]})), data, cache)
    assert [r.cached for r in refit.records] == [True, False, False, False]
    # disabling a stage changes the chain from there on
    off = chain(Recipe.from_dict(set_values(recipe_dict(), {"stages.t_scale.enabled": False})), data, cache)
    assert [r.address for r in off.records] == ["t_add", "t_bias", "emit"]
    assert [r.cached for r in off.records] == [True, True, False]
    # an input file's bytes change: nothing is reused
    f = data / "systems" / "sysA" / "t1.json"
    f.write_text(f.read_text().replace("0.5", "0.625"))
    changed_input = chain(Recipe.from_dict(recipe_dict()), data, cache)
    assert not any(r.cached for r in changed_input.records)
    assert scores(changed_input.tables["detections"])[("t1", 0)] == 0.562  # 0.5625, rounded half to even


def test_a_cache_entry_gives_back_the_input_tables_still_in_memory(toys, data, tmp_path):
    # an entry refers to the input files for the tables its stage passed through (truth, systems:
    # gigabytes of points on a dev set); loading it while the inputs are in memory takes those
    # tables, not a second copy read from the same files
    recipe = Recipe.from_dict(recipe_dict())
    cache = StageCache(tmp_path / "cache")
    loaded = load_inputs(recipe, data, cache_dir=cache.root)
    cache.remember(loaded.files)
    fit, _ = clip_sets(recipe, loaded.tables)
    first = run_chain(recipe, loaded.tables, loaded.key, fit_clips=fit, cache=cache)
    live = StageCache(tmp_path / "cache")  # nothing in its memory: the entry is read from disk
    live.remember(loaded.files)
    tables, _ = live.load(first.key)
    assert tables["truth"] is loaded.tables["truth"]
    assert tables["systems"]["sysA"] is loaded.tables["systems"]["sysA"]
    assert tables["detections"].equals(first.tables["detections"])  # the stage's own output: its file
    # a cache that has not seen the inputs reads the files: the same tables
    cold, _ = StageCache(tmp_path / "cache").load(first.key)
    assert cold["truth"] is not loaded.tables["truth"] and cold["truth"].equals(loaded.tables["truth"])
    assert cold["systems"]["sysA"].equals(loaded.tables["systems"]["sysA"])
    # a chain resumed from the entry carries the inputs' own tables on
    again = run_chain(recipe, loaded.tables, loaded.key, fit_clips=fit, cache=live)
    assert all(r.cached for r in again.records)
    assert again.tables["systems"]["sysA"] is loaded.tables["systems"]["sysA"]
    assert again.tables["detections"].equals(first.tables["detections"])
    # a file removed from the cache is not answered from memory: the entry is damaged
    for f in (tmp_path / "cache" / "inputs").glob("truth-*.parquet"):
        f.unlink()
    with pytest.raises(Exception, match="no such file"):
        StageCache(tmp_path / "cache").load(first.key)
    fresh = StageCache(tmp_path / "cache")
    fresh.remember(loaded.files)
    with pytest.raises(Exception, match="no such file"):
        fresh.load(first.key)


def test_a_resumed_chain_lets_the_table_it_read_go_once_a_stage_replaced_it(toys, data, tmp_path, monkeypatch):
    # a chain resumed from an entry holds what it read (a dev set's detections: gigabytes of
    # points) only until the next stage has replaced it, not through the rest of the chain
    import weakref

    import calib.recipe.cache as stage_cache

    monkeypatch.setattr(stage_cache, "MEMORY_BYTES", 0)  # the cache's memory keeps nothing: only the chain does
    chain(Recipe.from_dict(recipe_dict()), data, StageCache(tmp_path / "cache"))
    read = []

    class Watched(StageCache):
        def load(self, key):
            out = super().load(key)
            read.append(weakref.ref(out[0]["detections"]))
            return out

    alive = []
    apply = toys["t_round"].apply

    def watched_apply(self, tables):
        alive.append(read[0]() is not None)
        return apply(self, tables)

    monkeypatch.setattr(toys["t_round"], "apply", watched_apply)
    changed = Recipe.from_dict(set_values(recipe_dict(), {"stages.t_scale.factor": 1.0}))
    res = chain(changed, data, Watched(tmp_path / "cache"))
    assert [r.cached for r in res.records] == [True, True, False, False] and len(read) == 1
    assert alive == [False]  # t_scale replaced t_bias's table: gone before the emitter runs
    assert res.tables["detections"].equals(chain(changed, data).tables["detections"])


def test_row_selections_are_recomputed_not_stored(toys, data, tmp_path):
    # threshold and cap select rows in milliseconds; writing their output (every detection's
    # points) to Parquet and reading it back costs more, so the cache keeps no entry for them
    d = recipe_dict()
    d["stages"][1:1] = [{"type": "threshold", "threshold": 0.3}, {"type": "cap", "per_class": 1}]
    cache = StageCache(tmp_path / "cache")
    first = chain(Recipe.from_dict(d), data, cache)
    assert [r.address for r in first.records] == ["t_add", "threshold", "cap", "t_bias", "t_scale", "emit"]
    assert [cache.has(r.key) for r in first.records] == [True, False, False, True, True, True]
    assert len(list((tmp_path / "cache" / "stages").iterdir())) == 4
    fresh = chain(Recipe.from_dict(d), data)
    assert first.tables["detections"].equals(fresh.tables["detections"])
    # a later stage changed: the run resumes from t_add's entry and selects again
    later = set_values(d, {"stages.t_bias.weight": 2.0})
    again = chain(Recipe.from_dict(later), data, cache)
    assert [r.cached for r in again.records] == [True, False, False, False, False, False]
    assert again.tables["detections"].equals(chain(Recipe.from_dict(later), data).tables["detections"])
    # nothing changed: resumed from the emitter's entry, every stage counted as cached
    assert all(r.cached for r in chain(Recipe.from_dict(d), data, cache).records)


def test_run_recipe_writes_outputs_and_reruns_from_cache(toys, data, tmp_path, capsys):
    recipe = Recipe.from_dict(recipe_dict())
    out = tmp_path / "run"
    res = run_recipe(recipe, out, base_dir=data, scorer=toy_scorer)
    # DCASE files: one per clip, scores as computed, geometry untouched
    assert sorted(p.name for p in (out / "dcase").iterdir()) == ["s1.json", "s2.json", "t1.json", "t2.json"]
    t2 = load_annotations(out / "dcase" / "t2.json")
    assert [a["score"] for a in t2] == [0.188, 0.531]
    assert t2[0]["segmentation"] == load_annotations(data / "systems" / "sysA" / "t2.json")[0]["segmentation"]
    # metrics on the evaluate clips (t1, t2): hits (t1,0,3)=0.5 and (t2,0,5)=0.188
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["macro_mAP"] == pytest.approx((0.5 + 0.188) / 2)
    assert metrics["macro_pearson_r"] == pytest.approx(2 / 3)
    assert res.eval_clips == ["t1", "t2"] and res.fit_clips == ["s1", "s2"]
    assert read_state(out / "state" / "01-t_bias", stage_type="t_bias") == {"share_": {0: 0.75, 3: 0.25}}
    assert Recipe.from_dict(__import__("tomllib").loads((out / "recipe.toml").read_text())) == recipe
    report = (out / "report.md").read_text()
    assert "# Run of recipe `toy`" in report and "| 2 | t_bias | t_bias | weight=1.0 | yes |" in report
    first_bytes = {p.name: p.read_bytes() for p in [out / "detections.parquet", *sorted((out / "dcase").iterdir())]}
    capsys.readouterr()
    again = run_recipe(recipe, out, base_dir=data, scorer=toy_scorer)
    printed = capsys.readouterr().out
    assert all(r.cached for r in again.chain.records)
    assert "[4/4] emit (t_round): cached" in printed and "input system sysA: cached" in printed
    assert {p.name: p.read_bytes() for p in [out / "detections.parquet", *sorted((out / "dcase").iterdir())]} == first_bytes
    assert read_state(out / "state" / "01-t_bias", stage_type="t_bias") == {"share_": {0: 0.75, 3: 0.25}}
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_failed_stage_leaves_no_output_and_names_the_stage(toys, data, tmp_path):
    d = recipe_dict()
    d["stages"].append({"type": "t_explode", "message": "kaput"})
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="kaput") as e:
        run_recipe(Recipe.from_dict(d), out, base_dir=data, scorer=toy_scorer, log=lambda s: None)
    assert any("stages[3] (t_explode)" in n for n in e.value.__notes__)
    assert sorted(p.name for p in out.iterdir()) == [".cache"]


def test_no_ground_truth_runs_unscored(toys, data, tmp_path):
    d = recipe_dict(splits={})
    d["inputs"].pop("gt")
    d["stages"] = [s for s in d["stages"] if s["type"] != "t_bias"]
    res = run_recipe(Recipe.from_dict(d), tmp_path / "run", base_dir=data, scorer=toy_scorer, log=lambda s: None)
    assert res.metrics is None and not (tmp_path / "run" / "metrics.json").exists()
    assert "not scored" in (tmp_path / "run" / "report.md").read_text()


def test_unscored_rerun_removes_the_previous_runs_metrics(toys, data, tmp_path):
    recipe, out = Recipe.from_dict(recipe_dict(splits={"fit": ["dev-train-sony"], "evaluate": ["dev-train-sony", "dev-test-tau"]})), tmp_path / "run"
    run_recipe(recipe, out, base_dir=data, scorer=toy_scorer, log=lambda s: None)
    assert (out / "metrics.json").exists() and (out / "metrics_per_split.json").exists()
    (out / "notes.txt").write_text("mine")  # not a run output: left alone
    run_recipe(recipe, out, base_dir=data, scorer=toy_scorer, log=lambda s: None, score=False)
    assert sorted(p.name for p in out.iterdir()) == [".cache", "dcase", "detections.parquet", "notes.txt",
                                                     "recipe.toml", "report.md", "run.json", "state"]
    assert "Not scored (--no-score)." in (out / "report.md").read_text()


def test_stage_on_another_system(toys, data):
    import shutil

    shutil.copytree(data / "systems" / "sysA", data / "systems" / "sysB")
    d = recipe_dict(inputs={"gt": "gt", "systems": {"sysA": "systems/sysA", "sysB": "systems/sysB"}})
    d["stages"] = [{"type": "t_add", "name": "lift_b", "on_system": "sysB", "delta": 1.0}, {"type": "t_add", "delta": 0.5}]
    d.pop("emit")
    recipe = Recipe.from_dict(d)
    assert recipe.to_dict()["stages"][0]["on_system"] == "sysB"
    res = chain(recipe, data)
    raw = [0.5, 0.25, 0.75, 0.5, 0.125, 0.0625]
    assert res.tables["systems"]["sysB"].get_column("score").to_list() == [s + 1.0 for s in raw]
    assert res.tables["systems"]["sysA"].get_column("score").to_list() == raw
    assert res.tables["detections"].get_column("score").to_list() == [s + 0.5 for s in raw]
    assert res.records[0].on_system == "sysB"
    # where a stage runs is part of its cache key
    d2 = set_values(d, {"stages.lift_b.on_system": "sysA"})
    assert chain(Recipe.from_dict(d2), data).records[0].key != res.records[0].key
    with pytest.raises(RecipeError, match=r"stages\[0\].on_system: 'sysC' is not one of the systems \['sysA', 'sysB'\]"):
        Recipe.from_dict(set_values(d, {"stages.lift_b.on_system": "sysC"}))


def test_input_kinds_fill_the_tables_the_schema_promises():
    from calib.recipe.inputs import INPUT_KINDS
    from calib.recipe.schema import TABLE_INPUTS

    assert {k.table: f"inputs.{k.field}" for k in INPUT_KINDS} == TABLE_INPUTS


def test_chains_on_threads_share_one_stage_cache(toys, data, tmp_path, monkeypatch):
    """A portfolio's small chains run on threads (calib.score.parallel.thread_map) through one stage
    cache, saving, loading and evicting entries from its memory at once: each chain gives what it
    gives alone, and every entry is stored once."""
    import time

    from calib.recipe import cache as stage_cache
    from tests.threads import errors_on_threads

    monkeypatch.setattr(stage_cache, "MEMORY_BYTES", 3000)  # a few entries: threads evict each other's
    recipes = [Recipe.from_dict(recipe_dict(stages=[{"type": "t_add", "delta": d}, {"type": "t_bias", "weight": w},
                                                   {"type": "t_scale", "factor": 0.5}]))
               for d in (0.1, 0.25) for w in (0.5, 1.0)]
    loaded = load_inputs(recipes[0], data, cache_dir=tmp_path / "shared")
    clips = sorted(loaded.clips)
    jobs = [(r, clips[:k]) for r in recipes for k in (1, 2, len(clips))]
    alone = [run_chain(r, loaded.tables, loaded.key, fit_clips=fit).tables["detections"] for r, fit in jobs]

    class Pausing(dict):  # lets another thread run between a lookup and what follows it
        def get(self, key, default=None):
            found = super().get(key, default)
            time.sleep(1e-4)
            return found

        def values(self):
            for v in list(super().values()):
                time.sleep(1e-4)
                yield v

    shared = StageCache(tmp_path / "shared")
    shared._memory = Pausing()
    shared.remember(loaded.files)
    got = [None] * len(jobs)

    def work(t):
        for _ in range(3):  # later rounds are answered by the cache
            for i in [*range(t, len(jobs), 4), *range(len(jobs) - 1 - t, -1, -4)]:
                r, fit = jobs[i]
                got[i] = run_chain(r, loaded.tables, loaded.key, fit_clips=fit, cache=shared).tables["detections"]

    assert errors_on_threads(work) == []
    assert all(g.equals(a) for g, a in zip(got, alone))
    assert not list((tmp_path / "shared" / "stages").glob(".*"))  # no temporary folder left
