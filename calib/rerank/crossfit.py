"""Cross-fitting: out-of-fold scores for every training detection, so a dev estimate is honest.

Detections are split into K folds by group (a clip, or a recording site such as ``sony``/``tau``
read from the truth table's ``split`` column, e.g. ``dev-train-sony``); each fold is scored by a
model fitted on the other folds. No group ever feeds both a model and its own scores, so the
reranked system's mAP over the out-of-fold scores estimates what it will do on unseen clips
(or an unseen site), unlike the in-sample scores of the model fitted on everything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import polars as pl

from calib.rerank.model import Reranker

GROUPINGS = ("clip", "site")


def site_of_split(split: str) -> str:
    """The recording site in a split name: its last dash-separated word (``dev-train-sony`` -> ``sony``)."""
    return split.rsplit("-", 1)[-1] if split else ""


def fold_groups(dets: pl.DataFrame, truth: pl.DataFrame | None, by: str) -> np.ndarray:
    """The group of every detection: its clip, or its clip's recording site from the truth table."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; choose one of {GROUPINGS}")
    clips = dets.get_column("clip")
    if by == "clip":
        return clips.to_numpy().astype(str)
    if truth is None:
        raise ValueError("grouping by site needs the truth table (its split column names the site)")
    sites = (truth.select("clip", pl.col("split").map_elements(site_of_split, return_dtype=pl.String).alias("site"))
             .unique().sort("clip", "site"))
    multi = sites.group_by("clip").agg(pl.col("site").n_unique().alias("n")).filter(pl.col("n") > 1)
    if multi.height:
        raise ValueError(f"clip {multi.get_column('clip')[0]!r} appears under several sites in the truth table")
    joined = dets.select("clip").with_row_index("_row").join(sites, on="clip", how="left").sort("_row")
    site = joined.get_column("site")
    if site.null_count() or (site == "").any():
        bad = joined.filter(site.is_null() | (site == "")).get_column("clip")[0]
        raise ValueError(f"no recording site for clip {bad!r}: the truth table's split column is empty "
                         "(a flat GT folder); use --group clip, or put the GT in split folders like dev-train-sony")
    return site.to_numpy().astype(str)


def assign_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index of every row: whole groups to folds, largest first (ties in a seeded order), each
    to the fold with the fewest rows so far. With fewer groups than ``k``, one fold per group."""
    names, inverse, counts = np.unique(np.asarray(groups).astype(str), return_inverse=True, return_counts=True)
    if names.size < 2:
        raise ValueError(f"cross-fitting needs at least 2 groups, got {names.size} ({list(names)})")
    k = min(int(k), names.size)
    if k < 2:
        raise ValueError("cross-fitting needs at least 2 folds")
    perm = np.random.default_rng(seed).permutation(names.size)
    order = perm[np.argsort(-counts[perm], kind="stable")]
    load = np.zeros(k, np.int64)
    fold_of = np.empty(names.size, np.int64)
    for g in order:  # a loop over groups (clips or sites), not rows
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += counts[g]
    return fold_of[inverse]


@dataclass
class CrossFit:
    oof: np.ndarray  # out-of-fold probability per row
    fold: np.ndarray  # fold index per row
    fold_summaries: list[dict]


def cross_fit(X: np.ndarray, y: np.ndarray, fold: np.ndarray, clips: np.ndarray, groups: np.ndarray, *,
              feature_names: Sequence[str], zero_at_inference: Sequence[str], params: dict) -> CrossFit:
    """Fit one reranker per fold on the other folds (early stopping split by clip inside them)
    and score the held-out fold with it."""
    from calib.score.parallel import progress

    oof = np.full(y.size, np.nan)
    summaries = []
    for f in progress(np.unique(fold), desc="cross-fitting", unit="fold"):
        test = fold == f
        train = ~test
        if np.unique(y[train]).size < 2:
            raise ValueError(f"fold {int(f)}: the other folds hold only one label; use fewer folds or more data")
        r = Reranker(**params).fit(X[train], y[train], clips[train], feature_names=feature_names,
                                   zero_at_inference=zero_at_inference)
        oof[test] = r.predict_proba(X[test])
        summaries.append({"fold": int(f), "n_train": int(train.sum()), "n_test": int(test.sum()),
                          "positives_test": int(y[test].sum()), "n_iter": r.n_iter_,
                          "clips_test": int(np.unique(clips[test]).size),
                          "groups_test": np.unique(groups[test]).tolist()})
    return CrossFit(oof, fold, summaries)
