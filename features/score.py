"""Score features: the detector's own confidence and where it stands in its frame and class."""
from __future__ import annotations

import numpy as np
import polars as pl

from features.registry import FeatureContext, feature


@feature(per_clip=True)
def score(ctx: FeatureContext) -> np.ndarray:
    """The detector's raw confidence score (``score_raw`` when a stage has rewritten ``score``)."""
    return ctx.score


@feature(per_clip=True)
def score_rank(ctx: FeatureContext) -> np.ndarray:
    """Rank of the raw score among the detections of the same frame and class: 1 for the highest,
    tied scores share the best rank among them."""
    df = ctx.keyed(_s=ctx.score)
    rank = pl.col("_s").rank("min", descending=True).over(list(ctx.CLASS_KEYS))
    return df.select(rank.cast(pl.Float64)).to_series().to_numpy()
