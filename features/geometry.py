"""Geometry features: the seam-aware bounding box of an annotation's points, in canvas degrees."""
from __future__ import annotations

import numpy as np

from features.registry import FeatureContext, feature


@feature(per_clip=True)
def box_area(ctx: FeatureContext) -> np.ndarray:
    """Area (square degrees) of the seam-aware bounding box of the annotation's points: width times
    height, 0 for a single point or a line."""
    b = ctx.box
    return b.w * b.h


@feature(per_clip=True)
def box_elevation(ctx: FeatureContext) -> np.ndarray:
    """Centre row of the bounding box in canvas degrees (y = 90 - elevation: 0 at the zenith, 180 at
    the nadir)."""
    return ctx.box.cy


@feature(per_clip=True)
def box_aspect(ctx: FeatureContext) -> np.ndarray:
    """Aspect ratio of the seam-aware bounding box, (width + 1) / (height + 1) in degrees; the one
    degree (one canvas pixel) keeps a point or a line finite."""
    b = ctx.box
    return (b.w + 1.0) / (b.h + 1.0)


@feature(per_clip=True)
def n_points(ctx: FeatureContext) -> np.ndarray:
    """Number of (x, y, intensity) points of the annotation, over all its polygons."""
    return ctx.points.count.astype(np.float64)
