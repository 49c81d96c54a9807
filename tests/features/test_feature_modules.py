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


def _marked_module(root, name: str, feature_name: str):
    """A feature module ``name`` under ``root`` that leaves a marker file when imported."""
    marker = root / f"{name}.imported"
    (root / f"{name}.py").write_text(textwrap.dedent(f'''
        import pathlib
        from features import feature

        pathlib.Path({str(marker)!r}).write_text("imported")

        @feature(default=False)
        def {feature_name}(ctx):
            """Three times the raw score."""
            return 3 * ctx.score
    '''))
    return marker


def test_a_module_named_by_a_file_is_imported_only_when_allowed(tmp_path, monkeypatch):
    import sys

    from features import ImportNotAllowedError, allowed_imports, is_import_allowed

    marker = _marked_module(tmp_path, "feats_from_data_test", "thrice_score_a")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportNotAllowedError, match=r"recipe\.toml names the feature module 'feats_from_data_test'.*"
                       r"--allow-import feats_from_data_test"):
        load_feature_modules(["feats_from_data_test"], source="recipe.toml")
    assert not marker.exists() and "feats_from_data_test" not in sys.modules  # nothing ran
    with allowed_imports(["feats_from_data_test"]):
        assert is_import_allowed("feats_from_data_test")
        load_feature_modules(["feats_from_data_test"], source="recipe.toml")
    assert marker.exists() and "thrice_score_a" in registry()
    assert not is_import_allowed("feats_from_data_test")  # the permission ended with the block
    monkeypatch.delitem(sys.modules, "feats_from_data_test")


def test_allowing_a_package_allows_its_modules_only():
    from features import allowed_imports, is_import_allowed

    with allowed_imports(["mypkg"]):
        assert is_import_allowed("mypkg") and is_import_allowed("mypkg.feats.extra")
        assert not is_import_allowed("mypkgevil") and not is_import_allowed("os")
    assert is_import_allowed("features.energy")  # the built-in feature modules


def test_installed_entry_points_are_trusted(tmp_path, monkeypatch):
    """A package declaring a 'calib.features' entry point has its module imported with the built-ins."""
    import sys

    from features import get_feature, is_import_allowed, plugin_modules

    marker = _marked_module(tmp_path, "plugfeats_test", "thrice_score_b")
    info = tmp_path / "plugfeats_test-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugfeats-test\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[calib.features]\nplug = plugfeats_test\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugin_modules()["plug"] == "plugfeats_test" and is_import_allowed("plugfeats_test")
    assert get_feature("thrice_score_b").module == "plugfeats_test" and marker.exists()
    load_feature_modules(["plugfeats_test"], source="model/reranker.json")  # allowed: no error
    monkeypatch.delitem(sys.modules, "plugfeats_test")


def test_a_broken_plugin_does_not_stop_the_builtins_and_is_named(tmp_path, monkeypatch):
    import sys

    from features import get_feature

    reg_module = sys.modules["features.registry"]  # the module (the package exports a function of that name)

    info = tmp_path / "brokenfeats_test-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenfeats-test\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[calib.features]\nbroken = brokenfeats_test_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(reg_module.FEATURES, "broken", {})
    assert "energy_max" in registry()
    with pytest.raises(FeatureError, match="entry point 'broken' .*failed to import"):
        get_feature("from_the_broken_plugin")
