"""The recipes shipped with calib: each validates against the registry and runs end to end on the
small synthetic set with the official scorer; a portfolio over one of them packages cleanly."""
from __future__ import annotations

import json
import math

import pytest

from calib.package import build_package, check_package, parse_author
from calib.portfolio import Grid, run_portfolio
from calib.recipe import load_recipe, run_recipe, shipped_recipes

NAMES = ["av-ensemble", "decision-calibrated", "dense-16band", "enhanced-baseline", "prior-fusion"]


def test_all_five_are_shipped_and_valid():
    assert sorted(shipped_recipes()) == NAMES
    for name in NAMES:
        r = load_recipe(name)  # checks every stage type and parameter against the registry: a missing stage fails
        assert r.name == name and r.description and r.inputs.gt == "gt"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_shipped_recipe_runs_on_synthetic_data(name, synth_small, tmp_path):
    out = tmp_path / name
    res = run_recipe(load_recipe(name), out, base_dir=synth_small, log=lambda s: None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 < metrics["macro_mAP"] <= 1.0
    assert res.eval_clips and set(res.eval_clips).isdisjoint(res.fit_clips)
    assert len(list((out / "dcase").glob("*.json"))) == 8  # every clip has a file
    assert max(res.files.values()) < 20 * 2**20
    learned = [r for r in res.chain.records if r.learns]
    assert sorted(p.name for p in (out / "state").iterdir()) == sorted(
        f"{i:02d}-{r.address}" for i, r in enumerate(res.chain.records) if r.learns)
    assert all(r.fit_clips == len(res.fit_clips) for r in learned)


RAW_TABLE: dict[str, tuple[float, float]] = {}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_shipped_recipe_beats_its_raw_inputs(name, synth_small, tmp_path):
    """Every report claimed a gain from its post-processing: on the evaluation clips the recipe's
    macro mAP must exceed that of each input system scored as it comes (same scorer, same clips)."""
    from calib.recipe.inputs import load_inputs
    from calib.recipe.scoring import restrict
    from calib.recipe.scoring import official_scorer

    recipe = load_recipe(name)
    res = run_recipe(recipe, tmp_path / name, base_dir=synth_small, log=lambda s: None)
    tables = load_inputs(recipe, synth_small, cache_dir=tmp_path / "cache").tables
    truth = restrict(tables["truth"], res.eval_clips)
    systems = tables.get("systems") or {"detections": tables["detections"]}
    raw = max(official_scorer(restrict(df, res.eval_clips), truth, recipe.scoring)["macro_mAP"]
              for df in systems.values())
    got = res.metrics["macro_mAP"]
    RAW_TABLE[name] = (raw, got)
    print(f"\n{name}: best raw input {raw:.4f} -> recipe {got:.4f}")
    assert got > raw, (name, raw, got)


@pytest.mark.slow
def test_portfolio_and_package_with_real_stages(synth_small, tmp_path):
    grid = Grid.from_dict({"base": "av-ensemble", "folds": 2,
                           "axes": {"stages.max_envelope.enabled": [True, False], "stages.audio_blobs.sigma": [6.0, 10.0]}})
    base = shipped_recipes()["av-ensemble"]
    res = run_portfolio(grid, base, tmp_path / "pf", base_dir=synth_small, log=lambda s: None)
    rows = {r.variant.name: r.estimate() for r in res.results}
    assert len(rows) == 4 and all(not math.isnan(e.oof) for e in rows.values())
    for r in res.results:
        if not r.learned:  # nothing fit on dev: the out-of-fold estimate is the in-sample one
            assert r.estimate().gap == 0.0
    assert 1 <= len(res.chosen) <= 4 and res.chosen[0].role == "best"
    pkg = build_package(tmp_path / "pf", tmp_path / "sub", label="Doe_ABC", track="a",
                        authors=[parse_author("Doe, Jane, jane@abc.edu")], clips="dev", log=lambda s: None)
    assert check_package(pkg.out_dir) == [] and pkg.zip_path.exists()
