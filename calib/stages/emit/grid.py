"""``grid``: an n x n grid of energy-weighted points spanning each detection's box."""
from __future__ import annotations

import numpy as np

from calib.canvas.points import FlatPoints, offsets_of
from calib.canvas.lookup import MapLookup, map_lookup
from calib.canvas.raster import Raster, rasterize
from calib.canvas.sphere import CANVAS_WIDTH, group_sets, wrap_sets
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.emit.cache import emitter_key
from calib.stages.emit.common import emit_one, rewrite_points, spread_reach


def detection_boxes(r: Raster | MapLookup, frac: float = 0.0, spread: float = 0.0) -> np.ndarray:
    """Per map (x0, x1, y0, y1), x unwrapped: the bounding box of the detection's points and
    energy-map pixels at or above ``frac`` of their peak (NaN without points)."""
    pts = r.points
    n = r.n
    emax = pts.reduce(np.maximum, pts.e, empty=0.0)
    keep = (emax <= 0)[pts.row] | (pts.e >= (frac * emax)[pts.row])  # a non-positive peak keeps all
    box = np.full((n, 4), np.nan)
    lo_x = pts.reduce(np.minimum, np.where(keep, pts.x, np.inf), empty=np.inf)
    hi_x = pts.reduce(np.maximum, np.where(keep, pts.x, -np.inf), empty=-np.inf)
    lo_y = pts.reduce(np.minimum, np.where(keep, pts.y, np.inf), empty=np.inf)
    hi_y = pts.reduce(np.maximum, np.where(keep, pts.y, -np.inf), empty=-np.inf)
    if frac == 0 and spread == 0 and not (pts.e < 0).any():
        # the interpolated pixels lie inside the points' hull: only the pixels stamped points round
        # to (when they carry energy) can reach past the points' box
        st = np.flatnonzero(r.stamped & (pts.e > 0))
        if st.size:
            u = pts.row[st]
            px = np.round(pts.x[st]).astype(np.int64)
            py = np.round(pts.y[st]).astype(np.int64)
            inside = r.in_window(u, px, py)
            u, px, py = u[inside], px[inside], py[inside]
            np.minimum.at(lo_x, u, px)
            np.maximum.at(hi_x, u, px)
            np.minimum.at(lo_y, u, py)
            np.maximum.at(hi_y, u, py)
    else:
        thr = np.where(r.peak > 0, frac * r.peak, np.inf)
        unit, px, py, _ = r.pixels(thr)  # unit by unit, row-major
        if unit.size:
            first = np.r_[0, np.flatnonzero(np.diff(unit)) + 1]
            u = unit[first]
            lo_x[u] = np.minimum(lo_x[u], np.minimum.reduceat(px, first))
            hi_x[u] = np.maximum(hi_x[u], np.maximum.reduceat(px, first))
            lo_y[u] = np.minimum(lo_y[u], py[first])
            hi_y[u] = np.maximum(hi_y[u], py[np.r_[first[1:] - 1, unit.size - 1]])
    has = pts.count > 0
    box[has] = np.column_stack([lo_x, hi_x, lo_y, hi_y])[has]
    return box


def grid_batch(fp: FlatPoints, scores=None, *, n: int = 3, frac: float = 0.0, spread: float = 0.0,
               scale: float = 1.0, min_size: float = 0.0, floor: float = 0.0) -> tuple[FlatPoints, np.ndarray]:
    """Batch ``grid``: an n x n grid over each detection's box (:func:`detection_boxes`, scaled
    about its centre by ``scale`` and grown to at least ``min_size`` degrees a side, kept within
    the poles and at most 360 degrees wide). Each grid point carries the detection's energy there
    (bilinear on its 1 px/degree map, ``spread`` extending the map beyond its points), min-max
    normalised per detection to [``floor``, 1] (all 1 when the energy is flat). A box crossing the
    seam becomes two polygons that meet on the seam: support points on x = 360 at each grid row
    carry the grid's own interpolation along that row."""
    # the box of the points and the pixels they stamp, and n x n samples: read where they fall
    # (map_lookup) unless the box needs the map's pixels (frac, spread)
    r = map_lookup(fp) if frac == 0 and spread == 0 and not (fp.e < 0).any() else rasterize(fp, spread=spread)
    box = detection_boxes(r, frac, spread)
    dets = np.flatnonzero(~np.isnan(box[:, 0]))
    x0, x1, y0, y1 = (box[dets, k] for k in range(4))
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    hw = np.minimum(np.maximum(0.5 * (x1 - x0) * scale, 0.5 * min_size), 180.0)
    hh = np.maximum(0.5 * (y1 - y0) * scale, 0.5 * min_size)
    x0, x1 = cx - hw, cx + hw
    y0, y1 = np.maximum(0.0, cy - hh), np.minimum(180.0, cy + hh)
    m = dets.size
    if n == 1:
        sets = FlatPoints(cx, cy, np.ones(m), np.arange(m + 1, dtype=np.int64), np.arange(m + 1, dtype=np.int64))
        return group_sets(wrap_sets(sets), dets, fp.n)
    # np.linspace(x0, x1, n) of each detection (same arithmetic); row-major: y outer, x inner
    i = np.arange(n, dtype=np.float64)[None, :]
    gx_1d = i * ((x1 - x0) / (n - 1))[:, None] + x0[:, None]
    gy_1d = i * ((y1 - y0) / (n - 1))[:, None] + y0[:, None]
    gx_1d[:, -1] = x1
    gy_1d[:, -1] = y1
    gx = np.repeat(gx_1d[:, None, :], n, axis=1).reshape(m, n * n)
    gy = np.repeat(gy_1d[:, :, None], n, axis=2).reshape(m, n * n)
    v = r.sample(np.repeat(dets, n * n), gx.ravel(), gy.ravel()).reshape(m, n * n)
    lo, hi = v.min(axis=1), v.max(axis=1)
    flat = hi - lo <= 1e-12 * np.maximum(hi, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.where(flat[:, None], 1.0, floor + (1.0 - floor) * (v - lo[:, None]) / (hi - lo)[:, None])
    # a flat box repeats rows (and a point box every point): keep each distinct point once
    first = np.arange(n) == 0
    keep_x = (x1 > x0)[:, None] | first[None, :]
    keep_y = (y1 > y0)[:, None] | first[None, :]
    keep = (keep_y[:, :, None] & keep_x[:, None, :]).reshape(m, n * n)
    cnt = keep.sum(axis=1)
    sets = FlatPoints(gx[keep], gy[keep], e[keep], np.arange(m + 1, dtype=np.int64), offsets_of(cnt))
    # support on the seam: at each grid row, the interpolation between the two grid points on that
    # row around x = 360 (exact whatever the triangulation: the row is an edge of it)
    shift = 360.0 * np.floor(x0 / 360.0)
    xs = gx_1d - shift[:, None]
    crossing = (xs[:, -1] > CANVAS_WIDTH) & (x1 > x0) & (y1 > y0)
    support = None
    if crossing.any():
        c = np.flatnonzero(crossing)
        k = np.clip((xs[c] <= CANVAS_WIDTH).sum(axis=1) - 1, 0, n - 2)
        on = xs[c, k] == CANVAS_WIDTH  # a grid column on the seam: every row already has its point
        c, k = c[~on], k[~on]
        tt = (CANVAS_WIDTH - xs[c, k]) / (xs[c, k + 1] - xs[c, k])
        rows_e = e.reshape(m, n, n)
        s_e = rows_e[c, :, k] * (1 - tt)[:, None] + rows_e[c, :, k + 1] * tt[:, None]  # (sets, n rows)
        support = (np.repeat(c, n), gy_1d[c].ravel(), s_e.ravel())
    return group_sets(wrap_sets(sets, support), dets, fp.n)


def grid_points(polygons: list[np.ndarray], *, n: int = 3, frac: float = 0.0, spread: float = 0.0,
                scale: float = 1.0, min_size: float = 0.0, floor: float = 0.0) -> list[np.ndarray]:
    """:func:`grid_batch` of one detection (rounded)."""
    return emit_one(lambda fp, s: grid_batch(fp, n=n, frac=frac, spread=spread, scale=scale, min_size=min_size,
                                             floor=floor), polygons)


@register("grid")
class Grid(Stage):
    """Emit each detection as an n x n grid of energy-weighted points inside its box.

    The official renderer interpolates between the grid points, so the grid's convex hull (the
    box) becomes the mask, shaded by the detection's energy; 9 points per detection keep files
    tiny. ``frac`` tightens the box to the energy above that fraction of the peak; ``spread``
    (degrees) lets a sparse detection (a few peaks) grow a region first; ``scale`` and
    ``min_size`` (degrees) enlarge the box; ``floor`` lifts the lowest grid value above 0."""

    needs_columns = ("points", "score")

    PARAMS = declare(
        n=Param(int, 3, "grid points per side: n x n points per detection", unit="points", ge=1),
        frac=Param(float, 0.0, "tighten the box to the energy above this share of the peak (0: all points)",
                   unit="fraction of the peak", ge=0, le=1),
        spread=Param(float, 0.0, "grow sparse detections into a region first (Gaussian fall-off from the nearest "
                     "point; 0: none)", unit="degrees", ge=0),
        scale=Param(float, 1.0, "enlarge the box by this factor about its centre", unit="factor", gt=0),
        min_size=Param(float, 0.0, "enlarge the box to at least this width and height", unit="degrees", ge=0),
        floor=Param(float, 0.0, "the lowest grid value is lifted to this (values span [floor, 1])",
                    unit="fraction of the peak", ge=0, le=1),
    )

    def params(self) -> dict:
        return dict(n=int(self.n), frac=float(self.frac), spread=float(self.spread), scale=float(self.scale),
                    min_size=float(self.min_size), floor=float(self.floor))

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        params = self.params()
        # without frac and spread no map is drawn (map_lookup): a chunk's work is its points
        grow = None if params["frac"] == 0 and params["spread"] == 0 else 3.0 * spread_reach(self.spread)
        df = rewrite_points(tables["detections"], lambda fp, s: grid_batch(fp, **params), grow=grow,
                            emitter=emitter_key("grid", params))
        return tables.replace(detections=df)
