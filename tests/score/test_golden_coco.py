"""The official numbers of the dcase2026-coco protocol (../shared/golden/expected.json),
|delta| <= 1e-9, by both engines, through folders, calib tables and the CLI.

Known gap (issue #3, strict xfail so a fix is noticed): pearson_r is off by +3.07e-5 (sparse),
+3.34e-5 (grid) and +1.3e-6 (dense); every other key is exact, grid's class-7 AP included since
blob windows span floor(x - half)..ceil(x + half) with repeated columns adding up
(coco.window_columns). Nearly all of the gap sits in the pairs with the polar GT (class 7, rows
0..29, integer x): near a pole a blob's window edge cuts it where it is still strong (row 0 is a
sum of whole windows), so pearson_r reads the exact window rule of near-pole triplets, on the GT
side (shifts of about -2e-4 per polar pair, the same for every pair) and on the prediction side
(fractional x; -5e-5..-1e-3 per polar pair, 1e-6..1e-5 on the others).
Measured on the golden files and ruled out: no repeats (+2.1e-4), floor or round half-widths for
integer x, floor(x)/ceil(x)-centred or round-centred windows (the last gets class 7 wrong), inner
or rounded edges for fractional x (-5.2e-5 / -1.3e-5 on sparse, -5.9e-5 / -9e-6 on grid), one
more column on one side, half-widths scaled by 179/180 or from elevation 90 - y, a pixel row
radius, radian round trips of the window bounds (36 forms, none within 1e-6), float32 sequential
accumulation (moves 1e-8), seam-wrapping dilation, intensity clipping. Two one-parameter fits
come close without a reason behind them: one more repeated column for GT triplets on row 0
(grid +8.6e-8, sparse -2.4e-6, dense -1.6e-6), or 36% of the way from floor/ceil to inner edges
for fractional x (sparse and grid alike).
Also measured (2026-11-26): the Pearson region is pinned (one or three dilations, a 3 x 3 square
or no dilation move pearson_r by 2e-3..2e-2); fractional-x full-ring prediction windows are pinned
by grid's class-7 AP (362 columns, repeats summed); integer-x full rings are not pinned by any AP
(360 or 362 columns keep every AP and move pearson_r by -/+1.9e-4 on sparse and grid alike).
Ruled out as well: every pair of floor/ceil/round/trunc/round-half-up for the two edges of
fractional-x partial windows (nearest: trunc/trunc, grid -5.3e-6, sparse +3.5e-6),
np.arange(x - half, x + half + 1) floored (grid -2.3e-6, sparse +3.5e-5), column widths per
target row (4e-4..1e-3 off), half-widths capped at 180.5 or 181 (-3e-4), a one-row wider or
narrower row window (< 8e-6 either way), masked or float32-normalized maps in the correlation.
One more repeated column for the integer-x full rings of a single row y = 0..7 moves (grid, sparse,
dense) by about (-3.3e-5..-1.3e-5, -3.3e-5..-1.3e-5, -2.9e-6..0); no subset of those rows zeroes
all three gaps (best: rows 5 and 7, still 1.4e-6 off), so the rule is not one of these either.
Also measured (2026-11-26, later): window rows folding over a pole (az + 180) break class 7's AP
(grid pearson_r -3.1e-3); fractional-x partial windows taking every column within half + t of x
cross zero at different t for sparse (0.64) and grid (0.58), so no single overshoot rule fits."""
from __future__ import annotations

import json
import math

import pytest

from calib.score import score, score_tables

FOLDERS = ["sparse", "grid", "dense"]
SCALARS = ("mask_mAP", "mask_AP50", "pearson_r", "distance_mape")


def _same(a, b) -> bool:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None or (isinstance(a, float) and math.isnan(a))
    return a is not None and abs(a - b) <= 1e-9


KNOWN_GAPS = {"pearson_r"}


def assert_matches(got: dict, exp: dict, skip=(), skip_classes=()) -> None:
    for k in SCALARS:
        if k in skip:
            continue
        assert _same(got[k], exp[k]), (k, got[k], exp[k])
    assert got["n_pearson_pairs"] == exp["n_pearson_pairs"]
    assert set(got["per_class_mAP"]) == set(exp["per_class_mAP"])
    for c, v in exp["per_class_mAP"].items():
        if c in skip_classes:
            continue
        assert _same(got["per_class_mAP"][c], v), (c, got["per_class_mAP"][c], v)


@pytest.fixture(scope="module")
def expected(golden):
    return json.loads((golden / "expected.json").read_text().replace("NaN", "null"))


def _exact_part(got, exp):
    assert_matches(got, exp, skip=KNOWN_GAPS)


@pytest.mark.parametrize("folder", FOLDERS)
def test_fast_engine_reproduces_official_coco_numbers(golden, expected, folder):
    got = score(golden / folder, golden / "gt", protocol="dcase2026-coco")
    _exact_part(got, expected[f"{folder}:dcase2026-coco"])


@pytest.mark.xfail(strict=True, reason="issue #3: pearson_r off by 1e-6..3e-5 (polar blob window)")
@pytest.mark.parametrize("folder", FOLDERS)
def test_fast_engine_reproduces_every_official_coco_number(golden, expected, folder):
    got = score(golden / folder, golden / "gt", protocol="dcase2026-coco")
    assert_matches(got, expected[f"{folder}:dcase2026-coco"])


def test_reference_engine_agrees_with_fast_on_coco(golden, expected):
    ref = score(golden / "sparse", golden / "gt", protocol="dcase2026-coco", engine="reference")
    fast = score(golden / "sparse", golden / "gt", protocol="dcase2026-coco")
    _exact_part(ref, expected["sparse:dcase2026-coco"])
    for k in SCALARS:
        assert _same(ref[k], fast[k]), k


def test_coco_from_tables_and_cli(golden, expected, tmp_path):
    from calib.cli.main import main
    from calib.io.dcase import ingest_predictions, ingest_truth

    truth, _ = ingest_truth(golden / "gt")
    dets, _ = ingest_predictions([golden / "grid"])
    _exact_part(score_tables(dets, truth, protocol="dcase2026-coco"), expected["grid:dcase2026-coco"])
    out = tmp_path / "m.json"
    assert main(["score", str(golden / "grid"), str(golden / "gt"), "--protocol", "dcase2026-coco",
                 "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    _exact_part(got, expected["grid:dcase2026-coco"])
    assert got["per_class_mAP"]["2"] is None  # NaN written as null


def test_coco_refuses_threshold_lists(golden):
    with pytest.raises(ValueError, match="fixed IoU thresholds"):
        score(golden / "grid", golden / "gt", protocol="dcase2026-coco", iou_thresholds=[0.5])


def test_coco_sigma_changes_the_numbers(golden, expected):
    got = score(golden / "grid", golden / "gt", protocol="dcase2026-coco", sigma=3.0)
    assert not _same(got["mask_mAP"], expected["grid:dcase2026-coco"]["mask_mAP"])
