"""The Reranker estimator: exact HGB export, determinism, train-only handling, calibration."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from calib.rerank.calibration import Calibrator
from calib.rerank.model import Reranker, TreeEnsemble, validation_groups


def data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[rng.random(n) < 0.1, 2] = np.nan
    y = ((X[:, 0] + np.nan_to_num(X[:, 2]) + rng.normal(size=n)) > 0).astype(float)
    groups = np.array([f"c{i % 25:02d}" for i in range(n)])
    return X, y, groups


def test_tree_json_reproduces_sklearn_exactly():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from threadpoolctl import threadpool_limits

    X, y, _ = data()
    with threadpool_limits(1, user_api="openmp"):
        est = HistGradientBoostingClassifier(max_iter=25, min_samples_leaf=5, random_state=0).fit(X, y.astype(int))
    trees = TreeEnsemble.from_json(TreeEnsemble.from_hgb(est).to_json())
    Xt, _, _ = data(2000, seed=1)
    np.testing.assert_array_equal(trees.margin(Xt), est.decision_function(Xt))
    np.testing.assert_array_equal(expit(trees.margin(Xt)), est.predict_proba(Xt)[:, 1])


@pytest.mark.parametrize("backend", ["lightgbm", "hgb"])
def test_deterministic_and_learns(backend):
    X, y, g = data()
    fits = [Reranker(model=backend, min_samples_leaf=20, seed=3, num_threads=1).fit(X, y, g, feature_names=list("abcd"))
            for _ in range(2)]
    assert fits[0].model_text() == fits[1].model_text()
    p = fits[0].predict_proba(X)
    np.testing.assert_array_equal(p, fits[1].predict_proba(X))
    assert np.mean((p > 0.5) == (y == 1)) > 0.75  # the signal is x0 + x2
    imp = dict(zip("abcd", fits[0].importances_))
    assert imp["a"] > imp["b"] and imp["c"] > imp["d"]
    assert fits[0].n_iter_ <= 120 and fits[0].n_val_ > 0


def test_validation_split_holds_whole_groups():
    g = np.array(["a"] * 10 + ["b"] * 10 + ["c"] * 80)
    val = validation_groups(g, 0.15, seed=0)
    for name in "abc":
        assert len(set(val[g == name])) == 1  # a group is all in or all out
    assert 0 < val.sum() < g.size
    np.testing.assert_array_equal(val, validation_groups(g, 0.15, seed=0))
    assert not validation_groups(np.array(["only"] * 5), 0.5, seed=0).any()


def test_train_only_columns_are_zero_when_predicting():
    X, y, g = data()
    X[:, 3] = y + np.random.default_rng(5).normal(0, 0.01, y.size)  # a leaky column
    r = Reranker(min_samples_leaf=20, num_threads=1).fit(X, y, g, feature_names=list("abcd"),
                                                    zero_at_inference=["d"])
    X2 = X.copy()
    X2[:, 3] = 123.0
    np.testing.assert_array_equal(r.predict_proba(X), r.predict_proba(X2))
    X0 = X.copy()
    X0[:, 3] = 0.0
    np.testing.assert_array_equal(r.margin(X), r.margin(X0))


def test_calibrators():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 20000)
    y = (rng.random(z.size) < expit(z / 2.0)).astype(float)  # true temperature 2
    t = Calibrator("temperature").fit(z, y)
    assert abs(t.params_["temperature"] - 2.0) < 0.1
    s = Calibrator("sigmoid").fit(z, y)
    assert abs(s.params_["a"] - 0.5) < 0.03 and abs(s.params_["b"]) < 0.05
    order = np.argsort(z)
    for c in (t, s):
        assert np.all(np.diff(c.transform(z)[order]) > 0)  # strictly increasing: AP unchanged
        assert Calibrator.from_dict(c.to_dict()).transform(z).tolist() == c.transform(z).tolist()
    iso = Calibrator("isotonic").fit(z, y)
    p = iso.transform(z)
    assert np.all(np.diff(p[order]) >= 0)
    assert np.unique(p).size < z.size / 10  # isotonic merges scores into ties
    with pytest.raises(ValueError, match="both labels"):
        Calibrator("sigmoid").fit(z, np.ones_like(z))
    with pytest.raises(ValueError, match="unknown calibration"):
        Calibrator("platt").fit(z, y)


def test_bad_inputs():
    X, y, g = data(200)
    with pytest.raises(ValueError, match="unknown model"):
        Reranker(model="xgb").fit(X, y, g, feature_names=list("abcd"))
    with pytest.raises(ValueError, match="feature names"):
        Reranker().fit(X, y, g, feature_names=list("abc"))
    with pytest.raises(ValueError, match="validation split"):
        Reranker(calibration="isotonic").fit(X, y, np.array(["one"] * y.size), feature_names=list("abcd"))
