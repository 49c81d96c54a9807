"""Frame-level "gate" features derived from ground truth: train-only.

They describe how hard a frame is in ways only the ground truth knows, so a model can attribute
that part of the variation to the frame rather than to the detection's own features. They are
computed only when training (``train=True`` with the truth table and the labels) and are 0 at
inference, so nothing derived from ground truth reaches a prediction.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from features.energy import energy_entropy
from features.registry import FeatureContext, feature


def _frame_values(ctx: FeatureContext, table: pl.DataFrame, on: list[str], value: str) -> np.ndarray:
    joined = ctx.keyed().join(table, on=on, how="inner")
    out = np.zeros(ctx.n)
    if joined.height:
        out[joined.get_column("_row").to_numpy()] = joined.get_column(value).to_numpy()
    return out


@feature(train_only=True, default=False, per_clip=True)
def closure(ctx: FeatureContext) -> np.ndarray:
    """Share of the frame's ground-truth annotations that the system's matchable detections close:
    sum over classes of min(matchable detections, GT annotations) divided by the frame's GT count
    (same system, clip, frame); 0 for a frame without ground truth. Train-only."""
    truth = ctx.require("truth", "closure")
    labels = ctx.require("labels", "closure")
    if ctx.n == 0:
        return np.zeros(0)
    gt = truth.group_by(["clip", "frame", "class_id"]).agg(pl.len().cast(pl.Float64).alias("_ngt"))
    matched = (
        ctx.keyed(_y=np.asarray(labels, dtype=np.float64))
        .group_by(list(ctx.CLASS_KEYS)).agg(pl.col("_y").sum().alias("_nm"))
        .join(gt, on=["clip", "frame", "class_id"], how="left")
        .with_columns(pl.min_horizontal("_nm", pl.col("_ngt").fill_null(0.0)).alias("_closed"))
        .group_by(list(ctx.FRAME_KEYS)).agg(pl.col("_closed").sum())
    )
    total = gt.group_by(["clip", "frame"]).agg(pl.col("_ngt").sum().alias("_tot"))
    frame = matched.join(total, on=["clip", "frame"], how="inner").with_columns(
        (pl.col("_closed") / pl.col("_tot")).alias("_closure"))
    return _frame_values(ctx, frame, list(ctx.FRAME_KEYS), "_closure")


@feature(train_only=True, default=False, per_clip=True)
def diffuseness(ctx: FeatureContext) -> np.ndarray:
    """How diffuse the frame's true sources are: mean normalised energy entropy (as energy_entropy)
    of the frame's ground-truth annotations, all classes; 0 for a frame without ground truth.
    Train-only."""
    truth = ctx.require("truth", "diffuseness")
    if ctx.n == 0 or truth.height == 0:
        return np.zeros(ctx.n)
    tctx = FeatureContext(truth.select(["clip", "frame", "points"]))
    ent = truth.select(["clip", "frame"]).with_columns(pl.Series("_h", energy_entropy(tctx)))
    frame = ent.group_by(["clip", "frame"]).agg(pl.col("_h").mean().alias("_diff"))
    return _frame_values(ctx, frame, ["clip", "frame"], "_diff")
