"""The portfolio's gate gains: per gated stage and class, the gain of applying the stage (ungated,
and as gated) vs not applying it, in-sample / out-of-fold / site-held-out, on data where the real
cap stage hurts class 3 and helps class 5 in every clip (so every estimate knows the sign)."""
from __future__ import annotations

import csv
import json

import pytest

from calib.portfolio import Grid, run_portfolio
from calib.recipe import Recipe, dump_recipe
from calib.tables import write_table
from tests.stages.gatedata import cap_tables

SONY = [f"s{i}" for i in range(6)]
TAU = ["t0", "t1", "t2"]


@pytest.fixture()
def base(tmp_path):
    splits = {c: "dev-train-sony" for c in SONY} | {c: "dev-test-tau" for c in TAU}
    t = cap_tables(SONY + TAU, splits)
    root = tmp_path / "data"
    root.mkdir()
    write_table(t["truth"], root / "truth.parquet", "truth")
    write_table(t["detections"], root / "sysA.parquet", "detections")
    recipe = Recipe.from_dict({
        "name": "capped", "inputs": {"gt": "truth.parquet", "systems": {"sysA": "sysA.parquet"}},
        "splits": {"fit": ["dev-train-sony"], "evaluate": ["dev-test-tau"]},
        "stages": [{"type": "cap", "per_class": 1, "gate": "per_class", "gate_folds": 3}],
        "scoring": {"protocol": "dcase2026"}})
    dump_recipe(recipe, root / "capped.toml")
    return root


def test_gate_gains_in_the_portfolio(base, tmp_path):
    grid = Grid.from_dict({"base": "capped.toml", "folds": 3, "axes": {"stages.cap.gate": ["none", "per_class"]}})
    res = run_portfolio(grid, base / "capped.toml", tmp_path / "pf", base_dir=base, log=lambda s: None)
    plain, gated = res.results
    assert plain.gate_gains == []  # no gated stage, no extra runs
    rows = {g["class_id"]: g for g in gated.gate_gains}
    assert set(rows) == {None, *range(13)}  # every class and the macro mAP
    three, five, macro = rows[3], rows[5], rows[None]
    assert three["applied"] is False and five["applied"] is True and macro["applied"] is None
    for e in ("in_sample", "oof", "site"):
        # the cap alone halves class 3's recall (AP 1 -> 51/101) and lifts class 5 to AP 1
        assert three[f"stage_{e}"] == pytest.approx(51 / 101 - 1, abs=1e-6)
        assert five[f"stage_{e}"] > 0.05
        # as gated: class 3 left alone, class 5 capped
        assert three[f"gated_{e}"] == pytest.approx(0.0, abs=1e-9)
        assert five[f"gated_{e}"] == pytest.approx(five[f"stage_{e}"])
        assert macro[f"gated_{e}"] > 0 > macro[f"stage_{e}"]
    assert all(rows[c]["stage_oof"] != rows[c]["stage_oof"] for c in rows if c not in (None, 3, 5))  # NaN: no truth
    # the gated variant wins out of fold; its report shows the gains, the CSV holds every row
    assert res.chosen[0].name == gated.variant.name
    out = tmp_path / "pf"
    report = (out / "report.md").read_text()
    assert "## Gated stages: gain of applying each stage" in report
    assert f"| {gated.variant.name} | cap (cap) | per_class | 5 |" in report
    assert "| 3 Telephone | no | -0.4950 | -0.4950 | -0.4950 | 0.0000 | 0.0000 | 0.0000 |" in report
    assert (out / "gate_gains.png").exists() and "![gate gains](gate_gains.png)" in report
    with open(out / "gate_gains.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 14 and {r["variant"] for r in table} == {gated.variant.name}
    metrics = json.loads((out / "variants" / gated.variant.name / "metrics.json").read_text())
    assert len(metrics["gate_gains"]) == 14
