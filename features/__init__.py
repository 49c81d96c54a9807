"""Matchability features: named, vectorized measurements of each detection, for rerankers.

>>> from features import compute_features, registry
>>> X = compute_features(detections)            # the default set, feat_* columns
>>> [f.name for f in registry().values()]       # every feature, with .doc saying what it measures

Add your own with the :func:`feature` decorator in a module and ``--feature-module mypkg.feats``.
"""
from features.registry import (PREFIX, Feature, FeatureContext, FeatureError, compute_features,
                               default_features, feature, get_feature, load_feature_modules, registry,
                               resolve, unregister, versions)

__all__ = ["PREFIX", "Feature", "FeatureContext", "FeatureError", "compute_features", "default_features",
           "feature", "get_feature", "load_feature_modules", "registry", "resolve", "unregister", "versions"]
