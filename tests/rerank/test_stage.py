"""The rerank stage: recipe round trip, fit on dev tables, apply elsewhere, saved model reuse."""
from __future__ import annotations

import pytest

from calib.stages.base import Tables, get_stage, make_stage

from synthdets import make, truth_for

PARAMS = dict(min_samples_leaf=20, n_estimators=30, num_threads=1)


@pytest.fixture(scope="module")
def dev():
    dets, match, splits = make(n_clips=6, frames=8, per_frame=5, seed=2)
    return Tables(detections=dets, truth=truth_for(splits), match=match)


def test_registered_and_round_trips():
    cls = get_stage("rerank")
    assert cls.learns and "score_raw" in cls.adds_columns
    stage = make_stage({"type": "rerank", "model": "hgb", "features": "default,closure", **PARAMS})
    again = make_stage(stage.to_dict())
    assert again.to_dict() == stage.to_dict()
    with pytest.raises(ValueError, match="unknown parameter"):
        make_stage({"type": "rerank", "trees": 5})


def test_fit_on_dev_apply_elsewhere(dev, tmp_path):
    test_dets, _, _ = make(n_clips=3, frames=8, per_frame=5, seed=9)
    before = test_dets.clone()
    stage = make_stage({"type": "rerank", **PARAMS}).fit(dev)
    out = stage.apply(Tables(detections=test_dets))["detections"]
    assert test_dets.equals(before)  # input untouched
    assert out.get_column("score_raw").to_list() == test_dets.get_column("score").to_list()
    assert out.get_column("score").is_between(0, 1).all()
    # determinism, and a saved model reused through model_dir gives the same scores
    again = make_stage({"type": "rerank", **PARAMS}).fit(dev).apply(Tables(detections=test_dets))["detections"]
    assert out.equals(again)
    stage.save(tmp_path / "m")
    loaded = make_stage({"type": "rerank", "model_dir": str(tmp_path / "m")})
    assert loaded.apply(Tables(detections=test_dets))["detections"].equals(out)
    empty = stage.apply(Tables(detections=test_dets.head(0)))["detections"]
    assert empty.height == 0 and "score_raw" in empty.columns


def test_cross_fitting_in_a_recipe_keeps_a_report(dev):
    stage = make_stage({"type": "rerank", "folds": 3, **PARAMS})
    stage.fit(Tables(detections=dev["detections"], truth=dev["truth"], match=dev["match"]))
    per_fold = stage.report_["cross_fitting"]["per_fold"]
    assert len(per_fold) == 3 and sum(f["n_test"] for f in per_fold) == dev["detections"].height


def test_unfitted_apply_is_an_error(dev):
    with pytest.raises(RuntimeError, match="must be fitted"):
        make_stage({"type": "rerank"}).apply(dev)


def test_a_model_dir_naming_a_module_is_a_clear_input_error(dev, tmp_path):
    """A model folder listing a feature module that is not allowed: the stage says which flag to pass
    (an InputError, so the CLI exits 2) and imports nothing."""
    import json
    import sys

    from calib.io.errors import InputError

    make_stage({"type": "rerank", **PARAMS}).fit(dev).save(tmp_path / "m")
    meta_path = tmp_path / "m" / "reranker.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_modules"] = ["stage_feats_never_test"]
    meta["features"][1] = {"name": "never_feat", "version": 1, "module": "stage_feats_never_test", "train_only": False}
    meta["reranker"]["feature_names"][1] = "never_feat"
    meta_path.write_text(json.dumps(meta))
    stage = make_stage({"type": "rerank", "model_dir": str(tmp_path / "m")})
    with pytest.raises(InputError, match=r"rerank stage model_dir: .*'never_feat'.*--allow-import stage_feats_never_test"):
        stage.fit(Tables())
    assert "stage_feats_never_test" not in sys.modules
