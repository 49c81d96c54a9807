"""Gated stages in recipes: the ``gate`` keys (parsed, written back, checked), a run whose gate
decides per class on data where the answer is known (the real cap stage hurts class 3 and helps
class 5), its report, run.json and nested state, the stage cache, and gate values as a portfolio
axis."""
from __future__ import annotations

import json
import shutil
import tomllib

import polars as pl
import pytest

from calib.recipe import Recipe, RecipeError, run_recipe
from calib.recipe.address import set_values
from calib.recipe.state import STATE_FILE, StateError, load_state, read_state
from calib.stages.gate import GatedStage
from calib.tables import write_table
from tests.stages.gatedata import cap_tables

FIT = [f"c{i}" for i in range(6)]
EVAL = ["e0", "e1"]


@pytest.fixture()
def data(tmp_path):
    """Truth and detections as Parquet inputs: 6 fit clips (dev-train-sony), 2 scored (dev-test-tau)."""
    splits = {c: "dev-train-sony" for c in FIT} | {c: "dev-test-tau" for c in EVAL}
    t = cap_tables(FIT + EVAL, splits)
    root = tmp_path / "data"
    root.mkdir()
    write_table(t["truth"], root / "truth.parquet", "truth")
    write_table(t["detections"], root / "sysA.parquet", "detections")
    return root


def recipe_doc(**stage) -> dict:
    return {"name": "gated", "inputs": {"gt": "truth.parquet", "systems": {"sysA": "sysA.parquet"}},
            "splits": {"fit": ["dev-train-sony"], "evaluate": ["dev-test-tau"]},
            "stages": [{"type": "cap", "per_class": 1, **stage}], "scoring": {"protocol": "dcase2026"}}


def test_gate_keys_parse_write_back_and_build():
    doc = recipe_doc(gate="per_class", gate_folds=3, gate_confidence=0.9)
    recipe = Recipe.from_dict(doc)
    spec = recipe.stages[0]
    assert (spec.gate, spec.gate_params, spec.params) == ("per_class", {"gate_folds": 3, "gate_confidence": 0.9},
                                                          {"per_class": 1})
    assert spec.learns and "truth" in spec.needs_tables
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    from calib.recipe.io import dumps_recipe

    assert Recipe.from_dict(tomllib.loads(dumps_recipe(recipe.to_dict()))) == recipe
    stage = spec.build(recipe.scoring)
    assert isinstance(stage, GatedStage)
    assert stage.get_params() == {"stage": {"type": "cap", "per_class": 1}, "gate": "per_class", "folds": 3, "seed": 0,
                                  "confidence": 0.9, "scoring": {"protocol": "dcase2026"}}
    # "none" (a portfolio axis value) builds the plain stage; no gate key: not gated either
    for d in (recipe_doc(gate="none"), recipe_doc()):
        s = Recipe.from_dict(d).stages[0]
        assert not s.gated and not s.learns and type(s.build()).__name__ == "Cap"


@pytest.mark.parametrize("stage, where, match", [
    ({"gate": "per-class"}, "stages[0].gate", "must be one of 'per_class', 'global', 'none', got 'per-class'"),
    ({"gate": "global", "gate_folds": 2}, "stages[0].gate_folds", "must be an integer >= 3, got 2"),
    ({"gate": "global", "gate_seed": 1.5}, "stages[0].gate_seed", "must be an integer >= 0, got 1.5"),
    ({"gate": "per_class", "gate_confidence": "0.9"}, "stages[0].gate_confidence", r"must be a number in \[0.5, 1\)"),
    ({"gate_folds": 5}, "stages[0].gate_folds", "a gate parameter without a gate"),
    ({"gate": 1}, "stages[0].gate", "must be one of 'per_class', 'global', 'none', got 1"),
])
def test_bad_gate_keys_are_named(stage, where, match):
    with pytest.raises(RecipeError, match=match) as e:
        Recipe.from_dict(recipe_doc(**stage))
    assert e.value.where == where


def test_a_gate_needs_the_ground_truth():
    doc = recipe_doc(gate="per_class")
    doc["inputs"].pop("gt")
    with pytest.raises(RecipeError, match=r"stages\[0\]: stage 'cap' gated per_class: the gate scores it against the "
                                          r"ground truth needs the 'truth' table; the recipe has no inputs.gt"):
        Recipe.from_dict(doc)


def test_gated_run_keeps_the_class_the_stage_helps(data, tmp_path):
    out = tmp_path / "run"
    logs: list[str] = []
    res = run_recipe(Recipe.from_dict(recipe_doc(gate="per_class", gate_folds=3)), out, base_dir=data, log=logs.append)
    rec = res.chain.records[0]
    assert (rec.gate, rec.kept_classes, rec.learns, rec.fit_clips) == ("per_class", [5], True, 6)
    assert any("gate per_class: applied to class(es) 5" in line for line in logs)
    # scored on the two evaluation clips: class 3 untouched (AP 1), class 5 without its duplicates (AP 1)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_class"]["Telephone"]["mAP"] == pytest.approx(1.0)
    assert metrics["per_class"]["Domestic sounds"]["mAP"] == pytest.approx(1.0)
    det = pl.read_parquet(out / "detections.parquet")
    assert det.group_by("class_id").len().sort("class_id").rows() == [(3, 48), (5, 24)]  # 8 clips x 3 frames
    run = json.loads((out / "run.json").read_text())
    assert run["stages"][0]["gate"] == "per_class" and run["stages"][0]["kept_classes"] == [5]
    report = (out / "report.md").read_text()
    assert "## Gated stages" in report and "### cap (cap), gate `per_class`" in report
    assert "applied to class(es): 5." in report
    assert "| 5 Domestic sounds | 3 |" in report and "| 3 Telephone | 3 | -0.4950 |" in report
    assert "per_class=1; gate per_class (folds=3, seed=0, confidence=0.95)" in report
    # the state nests the wrapped stage's own state; it reads back onto a fresh gated stage
    state = out / "state" / "00-cap"
    doc = json.loads((state / STATE_FILE).read_text())
    assert doc["stage"] == "gate" and doc["attributes"]["stage_"] == {"$stage": "cap", "params": {
        "per_class": 1, "per_frame": 0, "column": "score", "tie_break": "det_id"}, "folder": "stage-0"}
    assert read_state(state / "stage-0", stage_type="cap") == {}
    back = load_state(res.chain.stages[0].clone(), state)
    assert back.kept_classes_ == [5] and type(back.stage_).__name__ == "Cap"
    # a re-run restores the gate from the cache, decision included
    again = run_recipe(Recipe.from_dict(recipe_doc(gate="per_class", gate_folds=3)), out, base_dir=data,
                       log=lambda s: None)
    assert again.chain.records[0].cached and again.chain.records[0].kept_classes == [5]
    section = report[report.index("## Gated stages"):report.index("## Metrics")]
    assert section in (out / "report.md").read_text()
    # the gate's parameters and the recipe's protocol are part of the cache key
    other = Recipe.from_dict(recipe_doc(gate="per_class", gate_folds=4))
    coco = Recipe.from_dict({**recipe_doc(gate="per_class", gate_folds=3), "scoring": {"protocol": "dcase2026-coco"}})
    keys = {res.chain.records[0].key}
    for r in (other, coco):
        keys.add(run_recipe(r, tmp_path / "other", base_dir=data, log=lambda s: None, score=False).chain.records[0].key)
    assert len(keys) == 3


def test_tampered_nested_state_is_a_clear_error(data, tmp_path):
    out = tmp_path / "run"
    res = run_recipe(Recipe.from_dict(recipe_doc(gate="per_class", gate_folds=3)), out, base_dir=data,
                     log=lambda s: None, score=False)
    state = out / "state" / "00-cap"
    doc = json.loads((state / STATE_FILE).read_text())
    for nested, match in (({"$stage": "os.system", "params": {}, "folder": "stage-0"}, "unknown stage 'os.system'"),
                          ({"$stage": "cap", "params": {}, "folder": "../stage-0"}, "not a file name this format uses"),
                          ({"$stage": "cap", "params": {"k": 1}, "folder": "stage-0"}, "rejects its stored parameters"),
                          ({"$stage": "nms", "params": {}, "folder": "stage-0"}, "holds the state of a 'cap' stage")):
        bad = tmp_path / "bad"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(state, bad)
        (bad / STATE_FILE).write_text(json.dumps({**doc, "attributes": {**doc["attributes"], "stage_": nested}}))
        with pytest.raises(StateError, match=match):
            load_state(res.chain.stages[0].clone(), bad)


def test_gate_as_a_portfolio_axis(data):
    from calib.portfolio.grid import Grid, expand

    grid = Grid.from_dict({"base": "x", "axes": {"stages.cap.gate": ["none", "per_class", "global"]}})
    variants = expand(grid, set_values(recipe_doc(), {"stages.cap.gate_folds": 3}) | {"name": "gated"})
    assert [v.recipe.stages[0].gated for v in variants] == [False, True, True]
    assert [v.label for v in variants] == ["cap.gate=none", "cap.gate=per_class", "cap.gate=global"]
