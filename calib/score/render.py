"""Fast, bit-exact rendering of an annotation onto the dcase2026 100 x 50 canvas.

The official renderer interpolates every polygon over the whole 200 x 50 grid with
``scipy.interpolate.griddata(..., method="linear", fill_value=0)``. Only grid points inside the
points' bounding box can get a value, and scipy's simplex search skips points outside that box
without moving its walk's starting simplex, so evaluating the same interpolator on the box's grid
points alone, in the same row-major order, gives bit-identical values at a fraction of the cost.
:func:`render_stack` renders many annotations at once, their polygons' interpolation batched.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay, QhullError

from calib.score.barycentric import install_transforms
from calib.score.gt_maps import H, W  # canvas rows (elevation) and columns (azimuth)

W2 = 2 * W  # interpolation canvas, wide enough for a polygon moved across the seam
SX = np.float32(W / 360)  # what `x * (100/360)` is in float32
SY = np.float32(H / 180)
SEAM_GAP = 50
NORM_EPS = 1e-8
BOX_HAIR = 1e-6  # scipy rejects points farther than 100 eps outside the points' box without a walk
_GRID = np.stack(np.meshgrid(np.arange(W2, dtype=np.float64), np.arange(H, dtype=np.float64)), axis=-1)  # [y, x] -> (x, y)


def scaled_polygon(poly: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, intensity) in float32 canvas units, x moved by +100 left of a seam-crossing gap."""
    return scaled_polygons([poly])[0]


def scaled_polygons(polys) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`scaled_polygon` of each polygon, the float32 scaling done for all in one pass."""
    if not polys:
        return []
    p = np.concatenate(polys).astype(np.float32)
    xs_all = p[:, 0] * SX
    ys_all = p[:, 1] * SY
    ends = np.cumsum([len(q) for q in polys])
    starts = np.concatenate(([0], ends[:-1]))
    full = np.flatnonzero(ends > starts)
    spread = np.zeros(len(polys), dtype=np.float32)
    if full.size:
        spread[full] = (np.maximum.reduceat(xs_all, starts[full]) - np.minimum.reduceat(xs_all, starts[full]))
    out = []
    for a, b, wide in zip(starts.tolist(), ends.tolist(), (spread > SEAM_GAP).tolist()):
        xs = xs_all[a:b]
        if wide and b - a >= 2:  # no gap can be wider than the spread
            s = np.sort(xs)
            gaps = np.diff(s)
            i = int(np.argmax(gaps))
            if gaps[i] > SEAM_GAP:
                xs = np.where(xs <= s[i], xs + np.float32(W), xs)
        out.append((xs, ys_all[a:b], p[a:b, 2]))
    return out


def stamp(amap: np.ndarray, xs: np.ndarray, ys: np.ndarray, vals: np.ndarray) -> None:
    """Fewer than 3 points (or a flat triangulation): each point sets its rounded pixel of the
    200-wide canvas, folded onto the (50, 100) map, to the max of itself and its intensity (round
    half to even, as Python's round)."""
    r = np.clip(np.rint(ys), 0, H - 1).astype(np.intp)
    c = np.clip(np.rint(xs), 0, W2 - 1).astype(np.intp)
    np.maximum.at(amap, (r, c % W), vals)


def _grid_box(lo: np.ndarray, hi: np.ndarray) -> tuple[int, int, int, int] | None:
    """Integer grid rows/columns inside the points' bounding box (lo, hi: (x, y) corners), widened
    by a hair (a superset of the grid points scipy does not reject outright as outside that box)."""
    x0 = max(0, math.ceil(float(lo[0]) - BOX_HAIR))
    x1 = min(W2 - 1, math.floor(float(hi[0]) + BOX_HAIR))
    y0 = max(0, math.ceil(float(lo[1]) - BOX_HAIR))
    y1 = min(H - 1, math.floor(float(hi[1]) + BOX_HAIR))
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
    box = _grid_box(ip.tri.min_bound, ip.tri.max_bound)  # the box scipy itself tests points against
    if box is None:
        return None
    y0, y1, x0, x1 = box
    q = _GRID[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 2)  # row-major, as griddata's meshgrid
    block = ip(q).reshape(y1 - y0 + 1, x1 - x0 + 1)
    block[~(block > 0)] = 0.0  # NaN and negatives -> 0
    return y0, x0, block


def fold_into(amap: np.ndarray, y0: int, x0: int, block: np.ndarray) -> None:
    """Max a block of the 200-wide canvas into the (50, 100) map, columns c and c + 100 onto c:
    the official fold max(canvas[:, :100], canvas[:, 100:]) without the 200-wide canvas."""
    rows = slice(y0, y0 + block.shape[0])
    x1 = x0 + block.shape[1]  # exclusive
    if x0 < W:
        view = amap[rows, x0 : min(x1, W)]
        np.maximum(view, block[:, : view.shape[1]], out=view)
    if x1 > W:
        lo = max(x0, W)
        view = amap[rows, lo - W : x1 - W]
        np.maximum(view, block[:, lo - x0 :], out=view)


class _Batch:
    """The interpolated polygons of several annotations, evaluated in one vectorized pass.

    Per polygon only Qhull's triangulation and the simplex walk stay scipy calls (they fix which
    triangle a grid point on an edge is read from). The barycentric transforms of all triangles
    are computed at once (:mod:`.barycentric`, bit-identical to scipy's), and the arithmetic
    LinearNDInterpolator does per grid point is repeated over all polygons at once, in its order
    and in float64: c_i = 0 + T[i,0]*(x-r_x) + T[i,1]*(y-r_y), c_2 = 1 - c_0 - c_1, value =
    0 + c_0*v_0 + c_1*v_1 + c_2*v_2 (scipy's _find_simplex and _do_evaluate), so values are
    bit-identical to :func:`interpolate_box`."""

    def __init__(self):
        self.items = []  # per polygon: (annotation, triangulation, box, xs, ys, vals)

    def add(self, owner: int, xs: np.ndarray, ys: np.ndarray, vals: np.ndarray) -> None:
        """Triangulate one polygon (raises QhullError when it cannot be) and queue it when its
        box holds grid points."""
        pts = np.empty((xs.size, 2), dtype=np.float64)
        pts[:, 0] = xs
        pts[:, 1] = ys
        tri = Delaunay(pts)  # what LinearNDInterpolator builds, with its default options
        box = _grid_box(tri.min_bound, tri.max_bound)  # the box scipy itself tests points against
        if box is not None:
            self.items.append((owner, tri, box, xs, ys, vals))

    def blocks(self):
        """(owner, y0, x0, block) per queued polygon; block float64 with NaN and negatives 0."""
        install_transforms([it[1] for it in self.items])
        owner, corner, shape, simplex, transform, corner_values = [], [], [], [], [], []
        for k, tri, (y0, y1, x0, x1), xs, ys, vals in self.items:
            T = tri.transform
            if np.isnan(T[:, 0, 0]).any():
                # a degenerate triangle: scipy's walk may then use a broader tolerance than
                # find_simplex offers; let the interpolator itself do it
                got = interpolate_box(xs, ys, vals)
                if got is not None:
                    yield (k, *got)
                continue
            owner.append(k)
            corner.append((y0, x0))
            shape.append((y1 - y0 + 1, x1 - x0 + 1))
            # the walk LinearNDInterpolator takes over the box's grid points (start 0, eps 100 ulp)
            found = tri.find_simplex(_GRID[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 2))
            simplex.append(found)
            # only the triangles a grid point falls in (tens of a polygon's ~1,000), taken here
            hit = found[found >= 0]
            transform.append(T[hit])
            corner_values.append(vals[tri.simplices[hit]].astype(np.float64))
        if not owner:
            return
        n_q = np.array([h * w for h, w in shape])
        s = np.concatenate(simplex)
        inside = s >= 0
        T = np.concatenate(transform)  # per grid point inside a triangle, in grid order
        v = np.concatenate(corner_values)
        q = np.concatenate([_GRID[y0 : y0 + h, x0 : x0 + w].reshape(-1, 2)
                            for (y0, x0), (h, w) in zip(corner, shape)])[inside]
        d0 = q[:, 0] - T[:, 2, 0]
        d1 = q[:, 1] - T[:, 2, 1]
        c0 = (0.0 + T[:, 0, 0] * d0) + T[:, 0, 1] * d1
        c1 = (0.0 + T[:, 1, 0] * d0) + T[:, 1, 1] * d1
        c2 = (1.0 - c0) - c1
        out = np.zeros(s.size, dtype=np.float64)  # fill_value 0 outside the triangulation
        out[inside] = ((0.0 + c0 * v[:, 0]) + c1 * v[:, 1]) + c2 * v[:, 2]
        out[~(out > 0)] = 0.0  # NaN and negatives -> 0
        start = 0
        for k, (y0, x0), hw, n in zip(owner, corner, shape, n_q.tolist()):
            yield k, y0, x0, out[start : start + n].reshape(hw)
            start += n


def render_stack(annotations) -> tuple[np.ndarray, np.ndarray]:
    """The maps of several annotations (each a sequence of polygons) as one (n, H * W) float64
    array, row k that of :func:`render_annotation` for annotation k, and (n,) bool: float32 maps.

    The interpolation of all their polygons is batched (:class:`_Batch`) and float64 maps are
    normalized in one vectorized division (the same element-wise divisions)."""
    n = len(annotations)
    maps = np.zeros((n, H, W), dtype=np.float64)
    interpolated = np.zeros(n, dtype=bool)
    batch = _Batch()
    owners = [k for k, polygons in enumerate(annotations) for _ in polygons]
    scaled = scaled_polygons([poly for polygons in annotations for poly in polygons])
    for k, (xs, ys, vals) in zip(owners, scaled):
        if xs.size >= 3:
            try:
                batch.add(k, xs, ys, vals)
            except QhullError:
                pass  # no triangulation: its points are stamped, as officially
            else:
                interpolated[k] = True
                continue
        stamp(maps[k], xs, ys, vals)  # max is order-free: stamping before folding is the same
    for k, y0, x0, block in batch.blocks():
        fold_into(maps[k], y0, x0, block)
    flat = maps.reshape(n, H * W)
    peak = flat.max(axis=1) if n else np.zeros(0)
    flat /= np.where(interpolated & (peak > NORM_EPS), peak, 1.0)[:, None]  # x / 1 is x exactly
    for k in np.flatnonzero(~interpolated):  # stamped points only: a float32 canvas
        flat[k] = _normalized32(flat[k])
    return flat, ~interpolated


def _normalized32(amap: np.ndarray) -> np.ndarray:
    """A map of stamped points (float32 values), normalized as the official float32 canvas is."""
    a32 = amap.astype(np.float32)
    m = a32.max()
    if m > np.float32(NORM_EPS):
        a32 = a32 / m
    return a32.astype(np.float64)


def render_annotation(polygons) -> tuple[np.ndarray, bool]:
    """The annotation's (50, 100) map, peaking at 1 (all zero when empty), and whether it is a
    float32 map.

    The official canvas starts as float32 and becomes float64 as soon as one polygon's griddata
    output (float64) is maxed into it; a map made only of stamped points stays float32, and is
    normalized in float32. Values are returned as float64 either way (float32 values exactly)."""
    flat, is32 = render_stack([polygons])
    return flat[0].reshape(H, W), bool(is32[0])
