"""The official numbers of the dcase2026-coco protocol, |delta| <= 1e-9 on every key, by both
engines, through folders, calib tables and the CLI: the ``*:dcase2026-coco`` entries of
golden/expected.json and the polar set golden/coco-polar (metrics and every matched pair's r).

The rule that makes pearson_r exact is the official blob renderer as SPEC-scoring.md states it
(:mod:`calib.score.coco_render`): float64 window arithmetic per triplet, float32 grids and kernel,
blobs added to a float32 canvas one after another in file order."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from calib.score import score, score_tables

FOLDERS = ["sparse", "grid", "dense"]
SCALARS = ("mask_mAP", "mask_AP50", "pearson_r", "distance_mape")


def _same(a, b) -> bool:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None or (isinstance(a, float) and math.isnan(a))
    return a is not None and abs(a - b) <= 1e-9


def assert_matches(got: dict, exp: dict) -> None:
    for k in SCALARS:
        assert _same(got[k], exp[k]), (k, got[k], exp[k])
    assert got["n_pearson_pairs"] == exp["n_pearson_pairs"]
    assert set(got["per_class_mAP"]) == set(exp["per_class_mAP"])
    for c, v in exp["per_class_mAP"].items():
        assert _same(got["per_class_mAP"][c], v), (c, got["per_class_mAP"][c], v)


def _read(path) -> dict:
    return json.loads(path.read_text().replace("NaN", "null"))


@pytest.fixture(scope="module")
def expected(golden):
    return _read(golden / "expected.json")


@pytest.fixture(scope="module")
def polar(golden):
    return golden / "coco-polar"


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.slow
def test_fast_engine_reproduces_every_official_coco_number(golden, expected, folder):
    got = score(golden / folder, golden / "gt", protocol="dcase2026-coco")
    assert_matches(got, expected[f"{folder}:dcase2026-coco"])


@pytest.mark.slow
def test_reference_engine_reproduces_every_official_coco_number(golden, expected):
    # sparse: every kind of blob (polar, seam, sub-pixel) against the dense GT, in ~20 s
    got = score(golden / "sparse", golden / "gt", protocol="dcase2026-coco", engine="reference")
    assert_matches(got, expected["sparse:dcase2026-coco"])


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_polar_set_metrics(polar, engine):
    got = score(polar / "pred", polar / "gt", protocol="dcase2026-coco", engine=engine)
    assert_matches(got, _read(polar / "expected.json"))


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_polar_set_every_pair_r(polar, engine):
    got = score(polar / "pred", polar / "gt", protocol="dcase2026-coco", engine=engine)
    pairs = got.details["pairs"]
    defined = pairs.filter(~pairs["pearson"].is_nan())
    mine = {(r["clip"], r["frame"], r["gt_valid_index"], r["pred_valid_index"]): r["pearson"]
            for r in defined.iter_rows(named=True)}
    official = {(p["clip"], p["frame"], p["gt_valid_index"], p["pred_valid_index"]): p["r"]
                for p in json.loads((polar / "pairs.json").read_text())}
    assert set(mine) == set(official)
    worst = max(abs(mine[k] - official[k]) for k in official)
    assert worst <= 1e-9, worst
    assert got["pearson_r"] == pytest.approx(float(np.mean(defined["pearson"].to_numpy())), abs=1e-15)


def test_polar_set_from_tables_and_cli(polar, tmp_path):
    from calib.cli.main import main
    from calib.io.dcase import ingest_predictions, ingest_truth

    exp = _read(polar / "expected.json")
    truth, _ = ingest_truth(polar / "gt")
    dets, _ = ingest_predictions([polar / "pred"])
    assert_matches(score_tables(dets, truth, protocol="dcase2026-coco"), exp)
    out = tmp_path / "m.json"
    assert main(["score", str(polar / "pred"), str(polar / "gt"), "--protocol", "dcase2026-coco",
                 "--out", str(out)]) == 0
    assert_matches(json.loads(out.read_text()), exp)


@pytest.mark.slow
def test_coco_from_tables_and_cli(golden, expected, tmp_path):
    from calib.cli.main import main
    from calib.io.dcase import ingest_predictions, ingest_truth

    truth, _ = ingest_truth(golden / "gt")
    dets, _ = ingest_predictions([golden / "grid"])
    assert_matches(score_tables(dets, truth, protocol="dcase2026-coco"), expected["grid:dcase2026-coco"])
    out = tmp_path / "m.json"
    assert main(["score", str(golden / "grid"), str(golden / "gt"), "--protocol", "dcase2026-coco",
                 "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert_matches(got, expected["grid:dcase2026-coco"])
    assert got["per_class_mAP"]["2"] is None  # NaN written as null


def test_coco_refuses_threshold_lists(golden):
    with pytest.raises(ValueError, match="fixed IoU thresholds"):
        score(golden / "grid", golden / "gt", protocol="dcase2026-coco", iou_thresholds=[0.5])


@pytest.mark.slow
def test_coco_sigma_changes_the_numbers(golden, expected):
    got = score(golden / "grid", golden / "gt", protocol="dcase2026-coco", sigma=3.0)
    assert not _same(got["mask_mAP"], expected["grid:dcase2026-coco"]["mask_mAP"])
