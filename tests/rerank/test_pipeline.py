"""fit_reranker end to end on synthetic detections with a given match table (no scorer needed):
out-of-fold scores, byte-identical model folders, load checks, apply."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from calib.rerank.pipeline import ModelMismatchError, RerankModel, fit_reranker, publish_folder

from synthdets import make, truth_for

PARAMS = dict(min_samples_leaf=20, n_estimators=40, num_threads=1)  # 1 thread: fast on a busy machine


@pytest.fixture(scope="module")
def data():
    dets, match, splits = make(n_clips=8, frames=10, per_frame=5, seed=1)
    return dets, match, truth_for(splits)


def fit(data, **kw):
    dets, match, truth = data
    return fit_reranker(dets, truth, match=match, folds=kw.pop("folds", 4), score_map=False, **{**PARAMS, **kw})


@pytest.fixture(scope="module")
def result(data):
    return fit(data)


def test_out_of_fold_scores(result, data):
    dets = data[0]
    oof = result.oof
    assert oof.height == dets.height and oof.get_column("score_oof").null_count() == 0
    assert not oof.get_column("score_oof").is_nan().any()
    # a clip is in exactly one fold; the folds cover every clip
    per_clip = oof.group_by("clip").agg(pl.col("fold").n_unique().alias("n"))
    assert per_clip.get_column("n").max() == 1
    assert oof.get_column("fold").n_unique() == 4
    # the model learned the signal (peak prominence): held-out scores rank labels well
    y = oof.get_column("label").to_numpy()
    s = oof.get_column("score_oof").to_numpy()
    auc = (np.argsort(np.argsort(s))[y == 1].mean() - (y.sum() - 1) / 2) / (y.size - y.sum())
    assert auc > 0.75
    rep = result.report
    assert rep["cross_fitting"]["folds"] == 4 and len(rep["cross_fitting"]["per_fold"]) == 4
    assert set(rep["feature_importance_gain"]) == set(rep["features"])
    assert "all" in rep["calibration"]["out_of_fold"]


def test_same_inputs_same_bytes(data, tmp_path, result):
    again = fit(data)
    a, b = result.save(tmp_path / "a"), again.save(tmp_path / "b")
    names = sorted(p.name for p in a.iterdir())
    assert names == ["model.lgb.txt", "oof.parquet", "reliability.png", "report.json", "reranker.json"]
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    dets = data[0]
    out1 = RerankModel.load(a).apply(dets)
    out2 = RerankModel.load(b).apply(dets)
    assert out1.equals(out2)


def test_hgb_same_bytes(data, tmp_path):
    a = fit(data, model="hgb", folds=2).save(tmp_path / "a")
    b = fit(data, model="hgb", folds=2).save(tmp_path / "b")
    for n in ("model.hgb.json", "reranker.json", "oof.parquet", "report.json"):
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def test_apply_keeps_raw_score_and_matches_in_sample(result, data, tmp_path):
    dets = data[0]
    folder = result.save(tmp_path / "m")
    model = RerankModel.load(folder)
    out = model.apply(dets)
    assert out.get_column("score_raw").to_list() == dets.get_column("score").to_list()
    np.testing.assert_array_equal(out.get_column("score").to_numpy(), result.oof.get_column("score_insample").to_numpy())
    twice = model.apply(out)  # score_raw is never overwritten, features read it
    assert twice.get_column("score_raw").to_list() == dets.get_column("score").to_list()
    np.testing.assert_array_equal(twice.get_column("score").to_numpy(), out.get_column("score").to_numpy())
    empty = model.apply(dets.head(0))
    assert empty.height == 0 and "score_raw" in empty.columns


def test_gates_train_only_end_to_end(data):
    # Trained with the ground-truth gates; the in-sample scores must equal a plain apply, which
    # computes features at inference (gates 0), so no prediction saw a gate's value.
    dets, match, truth = data
    truth = pl.concat([truth.with_columns(pl.lit(f).cast(pl.Int64).alias("frame")) for f in range(10)])  # GT per frame
    res = fit_reranker(dets, truth, match=match, folds=2, score_map=False, features="score,closure,diffuseness",
                       **PARAMS)
    assert res.report["train_only_features"] == ["closure", "diffuseness"]
    assert res.report["feature_importance_gain"]["closure"] > 0  # it was used in training
    insample = res.oof.get_column("score_insample").to_numpy()
    np.testing.assert_array_equal(res.model.apply(dets).get_column("score").to_numpy(), insample)
    # ... and fed its true values the same trees would score differently
    import features as F
    X = F.compute_features(dets, ["score", "closure", "diffuseness"], train=True, truth=truth,
                           labels=res.oof.get_column("label").to_numpy()).to_numpy()
    leaky = res.model.reranker.booster_.predict(X, raw_score=True)
    assert not np.allclose(leaky, res.model.reranker.margin(X))


def test_load_refuses_mismatch(result, tmp_path):
    folder = result.save(tmp_path / "m")
    meta_path = folder / "reranker.json"
    meta = json.loads(meta_path.read_text())
    meta["features"][1]["version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match="version 1 here but the model was trained on version 99"):
        RerankModel.load(folder)
    meta["features"][1] = {"name": "my_feat", "version": 1, "module": "mypkg.feats", "train_only": False}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match="'my_feat'.*--feature-module mypkg.feats"):
        RerankModel.load(folder)
    meta = json.loads((result.save(tmp_path / "n") / "reranker.json").read_text())
    meta["libraries"]["lightgbm"] = "1.0.0"
    (tmp_path / "n" / "reranker.json").write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match="LightGBM 1.0.0"):
        RerankModel.load(tmp_path / "n")
    with pytest.raises(ModelMismatchError, match="not a reranker model folder"):
        RerankModel.load(tmp_path)


def test_publish_folder_is_all_or_nothing(tmp_path, result):
    out = tmp_path / "model"

    def boom(folder):
        (folder / "half.txt").write_text("x")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        publish_folder(out, boom)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    publish_folder(out, result.save)
    publish_folder(out, result.save)  # a model folder is replaced
    assert (out / "reranker.json").exists()
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_text("meow")
    with pytest.raises(ValueError, match="not a reranker model"):
        publish_folder(other, result.save)


def test_without_cross_fitting(data, tmp_path):
    res = fit(data, folds=0)
    assert res.report["calibration"]["out_of_fold"] is None and res.report["cross_fitting"]["folds"] == 0
    assert res.oof.get_column("score_oof").is_nan().all() and (res.oof.get_column("fold") == -1).all()
    folder = res.save(tmp_path / "m")
    assert (folder / "reliability.png").stat().st_size > 0


def test_site_folds(data):
    res = fit(data, folds=5, group="site")
    per_fold = res.report["cross_fitting"]["per_fold"]
    assert sorted(g for f in per_fold for g in f["groups_test"]) == ["sony", "tau"]  # one fold per site


def test_a_model_folder_imports_its_feature_modules_only_when_allowed(data, tmp_path, monkeypatch):
    """reranker.json lists the modules of the model's custom features; loading imports one only
    when the user allowed it (--allow-import / --feature-module): a model folder is data."""
    import sys
    import textwrap

    import features as F

    marker = tmp_path / "imported"
    (tmp_path / "rr_feats_test.py").write_text(textwrap.dedent(f'''
        import pathlib
        from features import feature

        pathlib.Path({str(marker)!r}).write_text("imported")

        @feature(default=False)
        def rr_half_score(ctx):
            """Half the raw score."""
            return 0.5 * ctx.score
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        res = fit(data, features=["score", "rr_half_score"], feature_modules=["rr_feats_test"], folds=0)
        folder = res.model.save(tmp_path / "m")
        assert json.loads((folder / "reranker.json").read_text())["feature_modules"] == ["rr_feats_test"]
        # a new process: the module is not loaded, its feature not registered, nothing allowed
        F.unregister("rr_half_score")
        del sys.modules["rr_feats_test"]
        marker.unlink()
        monkeypatch.setattr(sys.modules["features.registry"], "_ALLOWED", set())
        with pytest.raises(ModelMismatchError, match="'rr_half_score'.*cannot import code by itself: pass "
                           "--allow-import rr_feats_test"):
            RerankModel.load(folder)
        assert not marker.exists() and "rr_feats_test" not in sys.modules
        with F.allowed_imports(["rr_feats_test"]):
            loaded = RerankModel.load(folder)
        assert marker.exists()
        dets = data[0]
        np.testing.assert_array_equal(loaded.predict(dets), res.model.predict(dets))
    finally:
        F.unregister("rr_half_score")
        sys.modules.pop("rr_feats_test", None)
