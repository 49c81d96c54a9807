"""Fast, bit-exact rendering of an annotation onto the dcase2026 100 x 50 canvas.

The official renderer interpolates every polygon over the whole 200 x 50 grid with
``scipy.interpolate.griddata(..., method="linear", fill_value=0)``. Only grid points inside the
points' bounding box can get a value, and scipy's simplex search skips points outside that box
without moving its walk's starting simplex, so evaluating the same interpolator on the box's grid
points alone, in the same row-major order, gives bit-identical values at a fraction of the cost.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import QhullError

H, W = 50, 100  # canvas rows (elevation) and columns (azimuth)
W2 = 2 * W  # interpolation canvas, wide enough for a polygon moved across the seam
SX = np.float32(W / 360)  # what `x * (100/360)` is in float32
SY = np.float32(H / 180)
SEAM_GAP = 50
NORM_EPS = 1e-8


def scaled_polygon(poly: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, intensity) in float32 canvas units, x moved by +100 left of a seam-crossing gap."""
    p = poly.astype(np.float32)
    xs = p[:, 0] * SX
    ys = p[:, 1] * SY
    vals = p[:, 2]
    if xs.size >= 2:
        s = np.sort(xs)
        gaps = np.diff(s)
        i = int(np.argmax(gaps))
        if gaps[i] > SEAM_GAP:
            xs = np.where(xs <= s[i], xs + np.float32(W), xs)
    return xs, ys, vals


def stamp(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray, vals: np.ndarray) -> None:
    """Fewer than 3 points (or a flat triangulation): each point sets its rounded pixel to the max
    of itself and its intensity (round half to even, as Python's round)."""
    r = np.clip(np.rint(ys), 0, H - 1).astype(np.intp)
    c = np.clip(np.rint(xs), 0, W2 - 1).astype(np.intp)
    np.maximum.at(canvas, (r, c), vals)


def _grid_box(xs: np.ndarray, ys: np.ndarray) -> tuple[int, int, int, int] | None:
    """Integer grid rows/columns that can lie inside the points' bounding box (a superset)."""
    x0 = max(0, math.floor(float(xs.min())) - 1)
    x1 = min(W2 - 1, math.ceil(float(xs.max())) + 1)
    y0 = max(0, math.floor(float(ys.min())) - 1)
    y1 = min(H - 1, math.ceil(float(ys.max())) + 1)
    if x0 > x1 or y0 > y1:
        return None
    return y0, y1, x0, x1


def interpolate_box(xs: np.ndarray, ys: np.ndarray, vals: np.ndarray):
    """Linear interpolation on the grid points of the points' bounding box.

    Returns (y0, x0, block) with block float64, NaN and negatives set to 0, or None when the
    box misses the grid. Raises QhullError when the points cannot be triangulated."""
    pts = np.empty((xs.size, 2), dtype=np.float64)  # what griddata builds from (xs, ys)
    pts[:, 0] = xs
    pts[:, 1] = ys
    ip = LinearNDInterpolator(pts, vals, fill_value=0.0)
    box = _grid_box(xs, ys)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    gy, gx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    q = np.empty((gx.size, 2), dtype=np.float64)
    q[:, 0] = gx.ravel()
    q[:, 1] = gy.ravel()
    block = ip(q).reshape(gx.shape)
    block[~(block > 0)] = 0.0  # NaN and negatives -> 0
    return y0, x0, block


def render_polygon_into(canvas: np.ndarray, poly: np.ndarray) -> bool:
    """Max one polygon into a (50, 200) float64 canvas; True when it was interpolated."""
    xs, ys, vals = scaled_polygon(poly)
    if xs.size >= 3:
        try:
            got = interpolate_box(xs, ys, vals)
        except QhullError:
            got = False
        if got is not False:
            if got is not None:
                y0, x0, block = got
                view = canvas[y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]]
                np.maximum(view, block, out=view)
            return True
    stamp(canvas, xs, ys, vals)
    return False


def render_annotation(polygons) -> tuple[np.ndarray, bool]:
    """The annotation's (50, 100) map, peaking at 1 (all zero when empty), and whether it is a
    float32 map.

    The official canvas starts as float32 and becomes float64 as soon as one polygon's griddata
    output (float64) is maxed into it; a map made only of stamped points stays float32, and is
    normalized in float32. Values are returned as float64 either way (float32 values exactly)."""
    canvas = np.zeros((H, W2), dtype=np.float64)
    interpolated = False
    for poly in polygons:
        interpolated |= render_polygon_into(canvas, poly)
    amap = np.maximum(canvas[:, :W], canvas[:, W:])
    if interpolated:
        m = amap.max()
        if m > NORM_EPS:
            amap = amap / m
        return amap, False
    a32 = amap.astype(np.float32)
    m = a32.max()
    if m > np.float32(NORM_EPS):
        a32 = a32 / m
    return a32.astype(np.float64), True
