"""Tied scores: AP under each tie order (avx2, the official machine's; avx512; stable), the
mAP range the score report gives, the Python API and the CLI flag."""
from __future__ import annotations

import json

import numpy as np
import pytest

from calib.score import score
from calib.score.aggregate import metrics_from_records
from calib.score.matching import KIND_FN, KIND_FP, KIND_MATCHED, average_precision, ties_can_matter

# four detections of one class, n_gt = 2: scores 0.2 0.2 0.7 0.7, tp T F T F
SCORES = np.array([0.2, 0.2, 0.7, 0.7])
TP = np.array([[True], [False], [True], [False]])


def test_ties_can_matter_only_when_tied_records_differ_in_tp():
    assert ties_can_matter(SCORES, TP)
    assert not ties_can_matter(SCORES, np.array([[True], [True], [False], [False]]))  # ties agree
    assert not ties_can_matter(np.array([0.1, 0.2, 0.3]), np.array([True, False, True]))  # no ties
    assert ties_can_matter(np.array([0.5, 0.5]), np.array([[True, True], [True, False]]))  # at threshold 2


def test_ap_under_each_tie_order_by_hand():
    # keys -s = -0.2 -0.2 -0.7 -0.7: the register network (one register, padded with +inf) swaps
    # lanes (0,3) and (1,2) in its second layer and nothing else: order 3 2 1 0 on AVX2 and
    # AVX-512 alike, tp F T F T: precision 0 .5 1/3 .5, recall 0 .5 .5 1 -> every recall point
    # sees max precision .5: AP .5. stable order 2 3 0 1, tp T F T F: precision 1 .5 2/3 .5,
    # recall .5 .5 1 1 -> 51 points at 1, 50 at 2/3: AP (51 + 50 * 2/3) / 101 (float32 sums).
    for order in ("avx2", "avx512"):
        assert average_precision(SCORES, TP, 2, order).tolist() == [np.float32(0.5)]
    acc = np.float32(0)
    for v in [np.float32(1)] * 51 + [np.float32(2) / np.float32(3)] * 50:
        acc = acc + v
    assert average_precision(SCORES, TP, 2, "stable")[0] == acc / 101


def _records(kinds, scores, cls, iou) -> dict[str, np.ndarray]:
    n = len(kinds)
    return {"kind": np.array(kinds, dtype=np.int8), "frame": np.zeros(n, np.int64), "cls": np.array(cls, np.int64),
            "det": np.arange(n), "gt": np.arange(n), "score": np.array(scores, dtype=np.float64),
            "iou": np.array(iou, dtype=np.float32), "best": np.zeros(n, np.float32),
            "gt_best": np.zeros(n, np.float32), "pearson": np.full(n, np.nan)}


def test_range_over_tie_orders_from_records():
    # class 0: the four records above (matched with IoU 0.9 = tp, or FP); class 1: one matched
    # record, its only GT (AP 1 at any order: no ties)
    rec = _records([KIND_MATCHED, KIND_FP, KIND_MATCHED, KIND_FP, KIND_MATCHED],
                   [0.2, 0.2, 0.7, 0.7, 0.9], [0, 0, 0, 0, 1], [0.9, 0, 0.9, 0, 0.9])
    got = metrics_from_records(rec, [0.5], "avx2", with_tie_range=True)
    rng = got["tie_order_range"]
    stable = float(average_precision(SCORES, TP, 2, "stable")[0])
    assert got["macro_mAP"] == pytest.approx((0.5 + 1.0) / 2)
    assert rng["by_order"]["avx2"]["macro_mAP"] == got["macro_mAP"] == rng["by_order"]["avx512"]["macro_mAP"]
    assert rng["by_order"]["stable"]["macro_mAP"] == pytest.approx((stable + 1.0) / 2)
    assert rng["macro_mAP"] == [got["macro_mAP"], rng["by_order"]["stable"]["macro_mAP"]]
    assert rng["classes_with_mixed_ties"] == ["Female speech"] and rng["tie_order"] == "avx2"
    # the reported numbers follow the chosen order; the range is the same whichever is chosen
    got_stable = metrics_from_records(rec, [0.5], "stable", with_tie_range=True)
    assert got_stable["macro_mAP"] == rng["by_order"]["stable"]["macro_mAP"]
    assert got_stable["tie_order_range"]["macro_mAP"] == rng["macro_mAP"]
    assert "tie_order_range" not in metrics_from_records(rec, [0.5])


def test_without_mixed_ties_nothing_is_sorted_again(monkeypatch):
    import calib.score.aggregate as aggregate

    rec = _records([KIND_MATCHED, KIND_MATCHED, KIND_FP, KIND_FN], [0.5, 0.5, 0.1, np.nan], [0, 0, 0, 0],
                   [0.9, 0.9, 0, 0])
    calls = []
    real = aggregate.average_precision
    monkeypatch.setattr(aggregate, "average_precision", lambda *a: calls.append(a) or real(*a))
    got = metrics_from_records(rec, [0.5], with_tie_range=True)
    assert len(calls) == 2  # the class and the micro list, once each: the other orders reuse them
    rng = got["tie_order_range"]
    assert rng["macro_mAP"][0] == rng["macro_mAP"][1] == got["macro_mAP"]
    assert rng["classes_with_mixed_ties"] == [] and not rng["micro_has_mixed_ties"]


def test_score_result_keeps_the_official_keys_and_carries_the_range():
    import numpy as np

    from calib.score import Annotation

    poly = (np.array([[90.0, 70.0, 1.0], [130.0, 70.0, 0.5], [110.0, 100.0, 0.8]]),)  # a triangle of ~10 x 8 px
    gt = {"a": [Annotation(frame=0, class_id=3, score=float("nan"), polygons=poly)]}
    pred = {"a": [Annotation(frame=0, class_id=3, score=0.5, polygons=poly)]}
    res = score(pred, gt, tie_order="avx512", with_matches=False)
    assert "tie_order_range" not in res and res["macro_mAP"] == 1.0
    rng = res.tie_order_range
    assert rng["tie_order"] == "avx512" and rng["macro_mAP"] == [1.0, 1.0]
    assert rng["classes_with_mixed_ties"] == [] and not rng["micro_has_mixed_ties"]


def test_score_rejects_an_unknown_tie_order(golden):
    with pytest.raises(ValueError, match="tie_order must be one of"):
        score(golden / "grid", golden / "gt", tie_order="fastest")


def test_avx512_order_reproduces_numpy_on_this_avx512_machine(golden, monkeypatch, numpy_argsort_kernel):
    """The official algorithm with numpy's own argsort (the script run here) against tie_order="avx512"."""
    if numpy_argsort_kernel != "avx512":
        pytest.skip("numpy's runtime does not dispatch argsort to the AVX-512 kernel here")
    import calib.score.matching as matching

    mine = score(golden / "grid", golden / "gt", tie_order="avx512", with_matches=False)
    monkeypatch.setattr(matching, "tie_argsort", lambda keys, order="avx2": np.argsort(keys))
    live = score(golden / "grid", golden / "gt", with_matches=False)
    for k in ("macro_mAP", "micro_mAP", "macro_AP_per_thr", "micro_AP_per_thr"):
        assert mine[k] == live[k], k
    assert json.dumps(mine["per_class"]) == json.dumps(live["per_class"])


@pytest.mark.slow
def test_cli_tie_order_flag_and_printed_range(golden, tmp_path, capsys):
    from calib.cli.main import main

    out = tmp_path / "m.json"
    assert main(["score", str(golden / "grid"), str(golden / "gt"), "--tie-order", "stable", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    got = json.loads(out.read_text())
    rng = got["tie_order_range"]
    assert rng["tie_order"] == "stable" and got["macro_mAP"] == rng["by_order"]["stable"]["macro_mAP"]
    assert set(rng["by_order"]) == {"avx2", "avx512", "stable"}
    assert rng["macro_mAP"][0] < rng["macro_mAP"][1]  # the grid system's 2-decimal scores tie
    assert f"macro_mAP {rng['macro_mAP'][0]:.6f}..{rng['macro_mAP'][1]:.6f}" in printed
    official = json.loads((golden / "expected.json").read_text().replace("NaN", "null"))["grid:dcase2026"]
    assert abs(rng["by_order"]["avx2"]["macro_mAP"] - official["macro_mAP"]) <= 1e-9
    with pytest.raises(SystemExit) as e:
        main(["score", str(golden / "grid"), str(golden / "gt"), "--tie-order", "sse"])
    assert e.value.code == 2
