import polars as pl
import pytest
from fusedata import det, priors

from calib.stages.base import Tables, make_stage
from calib.stages.fuse.prior_fusion import PriorFusion

WINDOWS = priors([
    {"start_frame": 0, "end_frame": 20, "p": {3: 0.25, 4: 0.64}},
    {"start_frame": 20, "end_frame": 35, "p": {3: 1.0, 4: 0.0}},  # last window clipped at the clip end
])


def run(stage, rows, pri=WINDOWS):
    return stage.fit_apply(Tables(detections=det(rows), priors=pri))["detections"]


def test_prior_quarter_with_alpha_half_halves_the_score():
    out = run(PriorFusion(), [{"frame": 5, "class_id": 3, "score": 0.8, "az": 10, "el": 0}])
    assert out.get_column("score").to_list() == pytest.approx([0.4])
    assert out.get_column("score_raw").to_list() == [0.8]
    assert out.get_column("score_prior").to_list() == [0.25]


def test_windows_align_to_frames_and_uncovered_frames_keep_their_score():
    rows = [{"frame": f, "class_id": 4, "score": 1.0, "az": 0, "el": 0} for f in (0, 19, 20, 34, 35)]
    out = run(PriorFusion(alpha=1.0), rows)
    assert out.get_column("score").to_list() == pytest.approx([0.64, 0.64, 0.0, 0.0, 1.0])
    assert out.get_column("score_prior").to_list() == [0.64, 0.64, 0.0, 0.0, None]


def test_per_class_alpha_floor_and_missing_modes():
    rows = [{"frame": 1, "class_id": 3, "score": 0.8, "az": 0, "el": 0},
            {"frame": 1, "class_id": 4, "score": 0.5, "az": 0, "el": 0},
            {"frame": 21, "class_id": 4, "score": 0.5, "az": 0, "el": 0},
            {"frame": 40, "class_id": 4, "score": 0.5, "az": 0, "el": 0}]
    out = run(PriorFusion(class_alpha={"3": 1.0}, floor=0.04, missing="floor"), rows)
    # class 3: 0.8 * 0.25^1; class 4: 0.5 * 0.64^0.5; p = 0 floored to 0.04 -> * 0.2; frame 40 uncovered -> floor
    assert out.get_column("score").to_list() == pytest.approx([0.2, 0.4, 0.1, 0.1])
    with pytest.raises(ValueError, match="frame 40"):
        run(PriorFusion(missing="error"), rows)


def test_mask_class_and_existing_raw_score_untouched():
    d = det([{"frame": 2, "class_id": 3, "score": 0.8, "points": [[(10, 20, 1.0), (12, 22, 0.5)]]}]).with_columns(
        pl.lit(0.9).alias("score_raw"))
    out = PriorFusion().apply(Tables(detections=d, priors=WINDOWS))["detections"]
    assert out.get_column("score_raw").to_list() == [0.9]
    assert out.select("clip", "frame", "det_id", "class_id", "points").equals(
        d.select("clip", "frame", "det_id", "class_id", "points"))
    assert out.get_column("score").to_list() == pytest.approx([0.4])


def test_alpha_zero_is_identity_and_recipe_params_build_the_stage():
    rows = [{"frame": 1, "class_id": 4, "score": 0.3, "az": 0, "el": 0}]
    assert run(PriorFusion(alpha=0.0), rows).get_column("score").to_list() == [0.3]
    stage = make_stage({"type": "prior_fusion", "alpha": 0.25, "class_alpha": {"4": 2.0}, "floor": 0.01})
    assert run(stage, rows).get_column("score").to_list() == pytest.approx([0.3 * 0.64 ** 2])


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="floor"):
        run(PriorFusion(floor=2.0), [])
    with pytest.raises(ValueError, match="class 13"):
        run(PriorFusion(class_alpha={"13": 1.0}), [])
    with pytest.raises(ValueError, match="missing"):
        run(PriorFusion(missing="ignore"), [])
