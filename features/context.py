"""Context features: the company a detection keeps in its frame."""
from __future__ import annotations

import numpy as np
import polars as pl

from calib.canvas.sphere import CANVAS_WIDTH
from features.registry import FeatureContext, feature


@feature(per_clip=True)
def n_frame(ctx: FeatureContext) -> np.ndarray:
    """Number of detections of the same system in the same clip and frame (all classes)."""
    df = ctx.keyed()
    return df.select(pl.len().over(list(ctx.FRAME_KEYS)).cast(pl.Float64)).to_series().to_numpy()


@feature(per_clip=True)
def n_frame_class(ctx: FeatureContext) -> np.ndarray:
    """Number of detections of the same system, clip, frame and class."""
    df = ctx.keyed()
    return df.select(pl.len().over(list(ctx.CLASS_KEYS)).cast(pl.Float64)).to_series().to_numpy()


def _wrap(expr: pl.Expr) -> pl.Expr:
    return expr - CANVAS_WIDTH * (expr / CANVAS_WIDTH).floor()


@feature(per_clip=True)
def nms_dominance(ctx: FeatureContext) -> np.ndarray:
    """Local NMS dominance: the raw score divided by the best raw score among same-class detections
    of the frame whose seam-aware bounding boxes meet this one's (itself included), so 1 means
    non-maximum suppression would keep it and 0.5 that a neighbour scores twice as high.
    1 when every such score is 0."""
    if ctx.n == 0:
        return np.zeros(0)
    b = ctx.box
    keys = list(ctx.CLASS_KEYS)
    df = ctx.keyed(_s=ctx.score, _x0=b.x0, _w=b.w, _y0=b.y0, _h=b.h)
    other = df.select(keys + [pl.col(c).alias(c + "_o") for c in ("_s", "_x0", "_w", "_y0", "_h")])
    meet_x = (_wrap(pl.col("_x0_o") - pl.col("_x0")) <= pl.col("_w")) | (
        _wrap(pl.col("_x0") - pl.col("_x0_o")) <= pl.col("_w_o"))
    meet_y = (pl.col("_y0_o") <= pl.col("_y0") + pl.col("_h")) & (pl.col("_y0") <= pl.col("_y0_o") + pl.col("_h_o"))
    best = (
        df.lazy()
        .join(other.lazy(), on=keys, how="inner")
        .filter(meet_x & meet_y)
        .group_by("_row")
        .agg(pl.col("_s_o").max().alias("_best"))
        .collect()
        .sort("_row")
    )
    best_score = np.zeros(ctx.n)
    best_score[best.get_column("_row").to_numpy()] = best.get_column("_best").to_numpy()
    s = ctx.score
    return np.divide(s, best_score, out=np.ones(ctx.n), where=best_score > 0)
