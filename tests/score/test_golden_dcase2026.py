"""The official numbers (../shared/golden/expected.json), |delta| <= 1e-9, for the dcase2026 protocol,
through every entry point: folders (both engines), calib tables, and the CLI's metrics.json."""
from __future__ import annotations

import json
import math

import pytest

from calib.score import load_dir, parse_thresholds, score, score_tables

KEYS = ["sparse:dcase2026", "grid:dcase2026", "grid:dcase2026:0.5:0.05:0.95", "dense:dcase2026"]


def _same(a, b) -> bool:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None or (isinstance(a, float) and math.isnan(a))
    return a is not None and abs(a - b) <= 1e-9


def assert_matches(got: dict, exp: dict) -> None:
    from calib.constants import CLASS_NAMES

    for k in ("macro_mAP", "macro_pearson_r", "micro_mAP", "micro_pearson_r", "micro_pearson_n"):
        assert _same(got[k], exp[k]), (k, got[k], exp[k])
    for k in ("macro_AP_per_thr", "micro_AP_per_thr", "iou_thresholds"):
        assert len(got[k]) == len(exp[k]) and all(_same(a, b) for a, b in zip(got[k], exp[k])), k
    for c, name in enumerate(CLASS_NAMES):
        assert _same(got["per_class"][name]["mAP"], exp["per_class_mAP"][str(c)]), (name, "mAP")
        assert _same(got["per_class"][name]["pearson_r"], exp["per_class_pearson"][str(c)]), (name, "r")


@pytest.fixture(scope="module")
def expected(golden):
    return json.loads((golden / "expected.json").read_text().replace("NaN", "null"))


@pytest.fixture(scope="module")
def gt(golden):
    return load_dir(golden / "gt", "gt")


@pytest.mark.parametrize("key", KEYS)
def test_fast_engine_reproduces_official_numbers(golden, expected, gt, key):
    folder, _, *thr = key.split(":", 2)
    got = score(load_dir(golden / folder, "pred"), gt, iou_thresholds=parse_thresholds(thr[0]) if thr else None)
    assert_matches(got, expected[key])


@pytest.mark.parametrize("key", ["grid:dcase2026", "sparse:dcase2026"])
@pytest.mark.slow
def test_reference_engine_reproduces_official_numbers(golden, expected, gt, key):
    folder = key.split(":")[0]
    got = score(load_dir(golden / folder, "pred"), gt, engine="reference")
    assert_matches(got, expected[key])


@pytest.mark.parametrize("spec", ["0.1,0.3", "0.05:0.1:0.45"])
@pytest.mark.slow
def test_engines_agree_on_other_thresholds(golden, gt, spec):
    pred = load_dir(golden / "grid", "pred")
    a = score(pred, gt, iou_thresholds=parse_thresholds(spec))
    b = score(pred, gt, iou_thresholds=parse_thresholds(spec), engine="reference")
    for k in ("macro_mAP", "micro_mAP", "macro_AP_per_thr", "micro_AP_per_thr", "macro_pearson_r"):
        assert a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]), k


@pytest.mark.slow
def test_tables_and_folders_agree(golden, expected):
    from calib.io.dcase import ingest_predictions, ingest_truth

    truth, _ = ingest_truth(golden / "gt")
    dets, _ = ingest_predictions([golden / "grid"])
    res = score_tables(dets, truth)
    assert_matches(res, expected["grid:dcase2026"])
    # the match table: one row per prediction, labels consistent with the metrics' counts
    assert res.matches.height == dets.height
    assert res.matches.get_column("best_iou").min() >= 0
    assert (res.matches.get_column("iou") <= res.matches.get_column("best_iou") + 1e-7).all()
    assert set(res.recall_ceiling["overall"]) == {"0.1", "0.25", "0.5"}
    assert res.gt_matches.height == truth.height


def test_threshold_specs():
    assert parse_thresholds("0.5:0.05:0.95") == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert parse_thresholds("0.25,0.5") == [0.25, 0.5]
    with pytest.raises(ValueError):
        parse_thresholds("0.5:0:0.9")
    with pytest.raises(ValueError):
        parse_thresholds("1.5")


@pytest.mark.slow
def test_cli_metrics_json_and_bad_file(golden, tmp_path, capsys, expected):
    from calib.cli.main import main

    out = tmp_path / "m.json"
    assert main(["score", str(golden / "grid"), str(golden / "gt"), "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert_matches(got, expected["grid:dcase2026"])
    assert got["per_class"]["Clapping"]["mAP"] is None  # NaN written as null
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "fold4_room8_mix001.json").write_text(
        '{"annotations": [{"metadata_frame_index": 0, "category_id": 1, "score": 0.5, "segmentation": [[[400, 1, 1]]]}]}')
    out2 = tmp_path / "m2.json"
    rc = main(["score", str(bad), str(golden / "gt"), "--out", str(out2)])
    err = capsys.readouterr().err
    assert rc != 0 and "fold4_room8_mix001.json" in err and "annotation 0" in err
    assert not out2.exists()
