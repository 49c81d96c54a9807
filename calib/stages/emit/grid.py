"""``grid``: an n x n grid of energy-weighted points spanning each detection's box."""
from __future__ import annotations

import numpy as np

from calib.render import energy_map, seam_split
from calib.stages.base import Stage, Tables, register
from calib.stages.emit.common import check_fraction, check_positive, rewrite_points


def detection_box(emap, frac: float = 0.0) -> tuple[float, float, float, float] | None:
    """(x0, x1, y0, y1), x unwrapped: the bounding box of the detection's points and energy-map
    pixels at or above ``frac`` of their peak."""
    pts = emap.points
    if len(pts) == 0:
        return None
    keep = pts[pts[:, 2] >= frac * pts[:, 2].max()] if pts[:, 2].max() > 0 else pts
    pix = emap.pixels(frac * emap.peak) if emap.peak > 0 else np.zeros((0, 3))
    allp = np.concatenate([keep, pix])
    return float(allp[:, 0].min()), float(allp[:, 0].max()), float(allp[:, 1].min()), float(allp[:, 1].max())


def grid_points(polygons: list[np.ndarray], *, n: int = 3, frac: float = 0.0, spread: float = 0.0,
                scale: float = 1.0, min_size: float = 0.0, floor: float = 0.0) -> list[np.ndarray]:
    """An n x n grid over the detection's box (:func:`detection_box`, scaled about its centre by
    ``scale`` and grown to at least ``min_size`` degrees a side, kept within the poles and at most
    360 degrees wide). Each grid point carries the detection's energy there (bilinear on its
    1 px/degree map, ``spread`` extending the map beyond its points), min-max normalised per
    detection to [``floor``, 1] (all 1 when the energy is flat). A box crossing the seam becomes two
    polygons that meet on the seam (support points on x = 360 carry the grid's interpolation)."""
    emap = energy_map(polygons, spread=spread)
    box = detection_box(emap, frac)
    if box is None:
        return []
    x0, x1, y0, y1 = box
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    hw = max(0.5 * (x1 - x0) * scale, 0.5 * min_size)
    hh = max(0.5 * (y1 - y0) * scale, 0.5 * min_size)
    hw = min(hw, 180.0)
    x0, x1 = cx - hw, cx + hw
    y0, y1 = max(0.0, cy - hh), min(180.0, cy + hh)
    if n == 1:
        return seam_split([cx], [cy], [1.0])
    xs = np.linspace(x0, x1, n)
    ys = np.linspace(y0, y1, n)
    gx, gy = np.meshgrid(xs, ys)  # row-major: y outer, x inner
    gx, gy = gx.ravel(), gy.ravel()
    v = emap.sample(gx, gy)
    lo, hi = v.min(), v.max()
    if hi - lo <= 1e-12 * max(hi, 1.0):
        e = np.ones_like(v)
    else:
        e = floor + (1.0 - floor) * (v - lo) / (hi - lo)
    pts = np.unique(np.column_stack([gx, gy, e]), axis=0)  # a flat box repeats rows
    pts = pts[np.lexsort((pts[:, 0], pts[:, 1]))]
    step = (y1 - y0) / (n - 1) if y1 > y0 else 1.0
    return seam_split(pts[:, 0], pts[:, 1], pts[:, 2], support_step=step)


@register("grid")
class Grid(Stage):
    """Emit each detection as an n x n grid of energy-weighted points inside its box.

    The official renderer interpolates between the grid points, so the grid's convex hull (the
    box) becomes the mask, shaded by the detection's energy; 9 points per detection keep files
    tiny. ``frac`` tightens the box to the energy above that fraction of the peak; ``spread``
    (degrees) lets a sparse detection (a few peaks) grow a region first; ``scale`` and
    ``min_size`` (degrees) enlarge the box; ``floor`` lifts the lowest grid value above 0."""

    needs_columns = ("points", "score")

    def __init__(self, *, n: int = 3, frac: float = 0.0, spread: float = 0.0, scale: float = 1.0,
                 min_size: float = 0.0, floor: float = 0.0):
        self.n = n
        self.frac = frac
        self.spread = spread
        self.scale = scale
        self.min_size = min_size
        self.floor = floor

    def _check(self) -> None:
        if int(self.n) != self.n or self.n < 1:
            raise ValueError(f"grid: n must be a positive integer, got {self.n!r}")
        check_fraction("grid: frac", self.frac)
        check_fraction("grid: floor", self.floor)
        check_positive("grid: spread", self.spread, allow_zero=True)
        check_positive("grid: scale", self.scale)
        check_positive("grid: min_size", self.min_size, allow_zero=True)

    def apply(self, tables: Tables) -> Tables:
        self._check()
        params = dict(n=int(self.n), frac=self.frac, spread=self.spread, scale=self.scale,
                      min_size=self.min_size, floor=self.floor)
        df = rewrite_points(tables["detections"], lambda polys, score: grid_points(polys, **params))
        return tables.replace(detections=df)
