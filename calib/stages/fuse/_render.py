"""Minimal private renderer of the dcase2026 100 x 50 energy maps, used by mask fusion until the
scorer's renderer (calib.score.render) is on main. It follows the protocol's steps (SPEC-scoring):
float32 scaling, seam shift, linear interpolation over the Delaunay triangulation on the 200 x 50
grid (fill 0, NaN and negatives 0), stamping for fewer than 3 points or a failed triangulation,
fold by max, max over polygons, normalize to a peak of 1."""
from __future__ import annotations

import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import QhullError

H, W = 50, 100
_SX, _SY = np.float32(W / 360), np.float32(H / 180)


def _polygon_canvas(poly: np.ndarray) -> np.ndarray:
    p = np.asarray(poly, dtype=np.float32)
    xs, ys, vals = p[:, 0] * _SX, p[:, 1] * _SY, p[:, 2]
    if xs.size >= 2:
        s = np.sort(xs)
        gaps = np.diff(s)
        k = int(np.argmax(gaps))
        if gaps[k] > 50:
            xs = np.where(xs <= s[k], xs + np.float32(W), xs)
    canvas = np.zeros((H, 2 * W), dtype=np.float32)
    if xs.size >= 3:
        try:
            ip = LinearNDInterpolator(np.column_stack([xs, ys]).astype(np.float64), vals, fill_value=0.0)
        except QhullError:
            ip = None
        if ip is not None:
            # only grid points in the bounding box can be non-zero
            x0, x1 = max(0, int(np.floor(xs.min()))), min(2 * W - 1, int(np.ceil(xs.max())))
            y0, y1 = max(0, int(np.floor(ys.min()))), min(H - 1, int(np.ceil(ys.max())))
            if x0 <= x1 and y0 <= y1:
                gy, gx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
                block = ip(np.column_stack([gx.ravel(), gy.ravel()]).astype(np.float64)).reshape(gx.shape)
                block[~(block > 0)] = 0.0
                canvas[y0:y1 + 1, x0:x1 + 1] = block.astype(np.float32)
            return canvas
    r = np.clip(np.rint(ys), 0, H - 1).astype(np.intp)
    c = np.clip(np.rint(xs), 0, 2 * W - 1).astype(np.intp)
    np.maximum.at(canvas, (r, c), vals)
    return canvas


def render_annotation(polygons) -> np.ndarray:
    """(50, 100) float32 map of one annotation's polygons (each an (N, 3) array), peak 1."""
    amap = np.zeros((H, W), dtype=np.float32)
    for poly in polygons:
        if len(poly):
            canvas = _polygon_canvas(poly)
            np.maximum(amap, np.maximum(canvas[:, :W], canvas[:, W:]), out=amap)
    m = amap.max()
    return amap / m if m > 1e-8 else amap
