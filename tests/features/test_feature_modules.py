"""User feature modules: registered by import path, used like the built-ins."""
from __future__ import annotations

import textwrap

import numpy as np
import polars as pl
import pytest

from calib.tables import DETECTIONS
from features import FeatureError, compute_features, feature, load_feature_modules, registry, unregister


@pytest.fixture(autouse=True)
def _clean_registry():
    before = set(registry())
    yield
    for name in set(registry()) - before:
        unregister(name)


def test_user_module_by_path(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg_feats_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "feats.py").write_text(textwrap.dedent('''
        import numpy as np
        from features import feature

        @feature(version=3)
        def twice_score(ctx):
            """Twice the raw score."""
            return 2 * ctx.score
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    load_feature_modules(["mypkg_feats_test.feats"])
    f = registry()["twice_score"]
    assert (f.version, f.module, f.train_only) == (3, "mypkg_feats_test.feats", False)
    df = pl.DataFrame([dict(system="s", clip="c", frame=0, det_id=0, class_id=0, score=0.25, distance=None,
                            instance_id=None, points=[[dict(x=1.0, y=2.0, e=3.0)]], extra=None)], schema=DETECTIONS)
    np.testing.assert_array_equal(compute_features(df, ["twice_score"]).get_column("feat_twice_score"), [0.5])


def test_bad_modules_and_features():
    with pytest.raises(FeatureError, match="cannot import feature module 'no_such_mod_xyz'"):
        load_feature_modules(["no_such_mod_xyz"])
    with pytest.raises(FeatureError, match="no docstring"):
        @feature()
        def undocumented(ctx):
            return ctx.score
    with pytest.raises(FeatureError, match="already registered"):
        @feature("energy_max")
        def clash(ctx):
            """Clashes with a built-in."""
            return ctx.score


def test_wrong_shape_is_an_error():
    @feature("bad_shape_test", default=False)
    def bad_shape_test(ctx):
        """Returns one value too many."""
        return np.zeros(ctx.n + 1)
    df = pl.DataFrame(schema=DETECTIONS)
    with pytest.raises(FeatureError, match="bad_shape_test.*shape"):
        compute_features(df, ["bad_shape_test"])
