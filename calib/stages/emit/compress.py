"""``compress``: the dense set thinned to the strongest pixel per G x G cell, with its outline kept."""
from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from calib.render import seam_split
from calib.stages.base import Stage, Tables, register
from calib.stages.emit.common import check_fraction, check_positive, rewrite_points
from calib.stages.emit.dense import dense_sets


def outline_points(pts: np.ndarray) -> np.ndarray:
    """Indices of the points spanning the set's convex hull (its vertices; for a flat set, the
    extreme points along x and y). Only each row's two ends can be vertices, so only they are
    handed to Qhull."""
    order = np.lexsort((pts[:, 0], pts[:, 1]))
    y = pts[order, 1]
    first = np.r_[True, y[1:] != y[:-1]]
    last = np.r_[y[1:] != y[:-1], True]
    cand = np.unique(np.concatenate([order[first], order[last]]))
    if len(cand) >= 3:
        try:
            return np.sort(cand[ConvexHull(pts[cand, :2]).vertices])
        except (QhullError, ValueError):
            pass
    ext = [np.argmin(pts[:, 0]), np.argmax(pts[:, 0]), np.argmin(pts[:, 1]), np.argmax(pts[:, 1])]
    return np.unique(ext)


def thin_to_cells(pts: np.ndarray, cell: int) -> np.ndarray:
    """Indices of the strongest point in each ``cell`` x ``cell`` block (anchored at the set's
    lowest x and y; ties go to the first in row-major order)."""
    cx = np.floor((pts[:, 0] - pts[:, 0].min()) / cell).astype(np.int64)
    cy = np.floor((pts[:, 1] - pts[:, 1].min()) / cell).astype(np.int64)
    order = np.lexsort((pts[:, 0], pts[:, 1], -pts[:, 2], cx, cy))
    key = cy[order] * (cx.max() + 1) + cx[order]
    first = np.r_[True, key[1:] != key[:-1]]
    return order[first]


def compress_points(polygons: list[np.ndarray], score: float = 0.0, *, frac: float = 0.1, cell: int = 5,
                    cell_high: int = 4, high_score: float = 0.5, spread: float = 0.0) -> list[np.ndarray]:
    """Compressed dense emission, polygon by polygon (as the scorer draws them): the
    energy map's pixels at or above ``frac`` of the peak, thinned to the strongest pixel of each
    G x G cell (G = ``cell_high`` when ``score >= high_score``, else ``cell``), plus the set's
    outline (convex-hull vertices) so the interpolated mask covers the same region and does not
    shrink. A set crossing the seam gets support points on the seam every G degrees so both
    halves reach it."""
    g = int(cell_high if score >= high_score else cell)
    out = []
    for d in dense_sets(polygons, frac=frac, spread=spread):
        if g > 1:
            idx = np.union1d(thin_to_cells(d, g), outline_points(d))
            d = d[idx]
            d = d[np.lexsort((d[:, 0], d[:, 1]))]
        out += seam_split(d[:, 0], d[:, 1], d[:, 2], support_step=float(max(g, 1)))
    return out


@register("compress")
class Compress(Stage):
    """Emit a compressed dense mask: the strongest pixel per G x G cell plus the mask's outline.

    Drops pixels below ``frac`` of the peak, keeps the strongest pixel in each G x G cell (G = ``cell``, or the finer ``cell_high`` for detections scoring >= ``high_score``,
    which matter most to AP) plus the outline points, so the rendered mask keeps its extent at a
    fraction of the dense size."""

    needs_columns = ("points", "score")

    def __init__(self, *, frac: float = 0.1, cell: int = 5, cell_high: int = 4, high_score: float = 0.5,
                 spread: float = 0.0):
        self.frac = frac
        self.cell = cell
        self.cell_high = cell_high
        self.high_score = high_score
        self.spread = spread

    def apply(self, tables: Tables) -> Tables:
        for name in ("cell", "cell_high"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"compress: {name} must be a positive integer, got {v!r}")
        check_fraction("compress: frac", self.frac)
        check_positive("compress: spread", self.spread, allow_zero=True)
        params = dict(frac=self.frac, cell=int(self.cell), cell_high=int(self.cell_high),
                      high_score=self.high_score, spread=self.spread)
        df = rewrite_points(tables["detections"], lambda polys, score: compress_points(polys, score, **params))
        return tables.replace(detections=df)
