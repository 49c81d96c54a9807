"""Temporal features: whether the same class is seen around the detection's frame.

Frames are 10 per second; neighbours are the frames just before and after (same system, clip and
class). A detection with no such neighbour gets 0."""
from __future__ import annotations

import numpy as np
import polars as pl

from features.energy import peak_index
from calib.canvas.sphere import CANVAS_WIDTH
from features.registry import FeatureContext, feature

#: peaks closer than this (canvas degrees) count as the same place in nbr_score_near
NEAR_DEGREES = 20.0
TRACK_KEYS = ["system", "clip", "class_id"]


def _per_row(ctx: FeatureContext, table: pl.DataFrame, value: str) -> np.ndarray:
    out = np.zeros(ctx.n)
    if table.height:
        out[table.get_column("_row").to_numpy()] = table.get_column(value).to_numpy()
    return out


@feature(per_clip=True)
def nbr_score(ctx: FeatureContext) -> np.ndarray:
    """Best raw score of the same class (same system and clip) in the previous or next frame;
    0 when the class is not detected there."""
    if ctx.n == 0:
        return np.zeros(0)
    df = ctx.keyed(_s=ctx.score)
    per_frame = df.group_by(TRACK_KEYS + ["frame"]).agg(pl.col("_s").max().alias("_m"))
    shifted = pl.concat([per_frame.with_columns(pl.col("frame") + d) for d in (-1, 1)])
    nb = shifted.group_by(TRACK_KEYS + ["frame"]).agg(pl.col("_m").max())
    joined = df.join(nb, on=TRACK_KEYS + ["frame"], how="inner")
    return _per_row(ctx, joined, "_m")


def _peak_xy(ctx: FeatureContext) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of each annotation's first most intense point (0, 0 without points)."""
    p = ctx.points
    x, y = np.zeros(ctx.n), np.zeros(ctx.n)
    peak = peak_index(ctx)
    ne = peak >= 0
    x[ne], y[ne] = p.x[peak[ne]], p.y[peak[ne]]
    return x, y


@feature(per_clip=True)
def nbr_score_near(ctx: FeatureContext) -> np.ndarray:
    """Best raw score of a same-class detection in the previous or next frame whose peak lies within
    20 degrees of this one's peak (canvas distance, wrapping at the seam): temporal support at the
    same place, not just anywhere."""
    if ctx.n == 0:
        return np.zeros(0)
    px, py = _peak_xy(ctx)
    df = ctx.keyed(_s=ctx.score, _px=px, _py=py)
    others = pl.concat([
        df.select(TRACK_KEYS + [(pl.col("frame") + d).alias("frame"),
                                pl.col("_s").alias("_s_o"), pl.col("_px").alias("_px_o"), pl.col("_py").alias("_py_o")])
        for d in (-1, 1)
    ])
    dx = (pl.col("_px") - pl.col("_px_o")).abs()
    dx = pl.min_horizontal(dx, CANVAS_WIDTH - dx)
    dist2 = dx * dx + (pl.col("_py") - pl.col("_py_o")) ** 2
    best = (
        df.lazy().join(others.lazy(), on=TRACK_KEYS + ["frame"], how="inner")
        .filter(dist2 <= NEAR_DEGREES ** 2)
        .group_by("_row").agg(pl.col("_s_o").max().alias("_m"))
        .collect()
    )
    return _per_row(ctx, best, "_m")


@feature(per_clip=True)
def track_len(ctx: FeatureContext) -> np.ndarray:
    """Length in frames of the run of consecutive frames, containing this one, in which the same
    system detects the same class in the clip (1 for an isolated frame)."""
    if ctx.n == 0:
        return np.zeros(0)
    df = ctx.keyed()
    runs = (
        df.select(TRACK_KEYS + ["frame"]).unique().sort(TRACK_KEYS + ["frame"])
        .with_columns(pl.col("frame").diff().over(TRACK_KEYS).ne(1).fill_null(True).alias("_new"))
        .with_columns(pl.col("_new").cum_sum().over(TRACK_KEYS).alias("_run"))
        .with_columns(pl.len().over(TRACK_KEYS + ["_run"]).cast(pl.Float64).alias("_len"))
    )
    joined = df.join(runs, on=TRACK_KEYS + ["frame"], how="inner")
    return _per_row(ctx, joined, "_len")
