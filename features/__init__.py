"""Matchability features: named, vectorized measurements of each detection, for rerankers.

>>> from features import compute_features, registry
>>> X = compute_features(detections)            # the default set, feat_* columns
>>> [f.name for f in registry().values()]       # every feature, with .doc saying what it measures

Add your own with the :func:`feature` decorator in a module, installed with a ``calib.features``
entry point or named with ``--feature-module mypkg.feats`` / ``--allow-import mypkg``.
"""
from features.registry import (ENTRY_POINT_GROUP, PREFIX, Feature, FeatureContext, FeatureError,
                               ImportNotAllowedError, allow_imports, allowed_imports, check_imports_allowed,
                               compute_features, default_features, feature, get_feature, is_import_allowed,
                               load_feature_modules, plugin_modules, registry, resolve, unregister, versions)

__all__ = ["ENTRY_POINT_GROUP", "PREFIX", "Feature", "FeatureContext", "FeatureError", "ImportNotAllowedError",
           "allow_imports", "allowed_imports", "check_imports_allowed", "compute_features", "default_features",
           "feature", "get_feature", "is_import_allowed", "load_feature_modules", "plugin_modules", "registry",
           "resolve", "unregister", "versions"]
