"""Rendering helpers for detections at 1 px/degree, shared by selection, tracking and emission.

Conventions (the DCASE 2026 canvas): x in [0, 360] (x = 360 is the meridian x = 0), y in [0, 180],
one pixel per degree; the pixel lattice has columns x = 0..359 and rows y = 0..180 (both poles are
rows). Everything that looks at one detection works in *unwrapped* x: its points are moved across
the seam so that they lie contiguously in ``[s, s + 360]`` with ``s`` in ``[0, 360)``, cutting the
circle at the largest empty gap between the detection's x values. Emitted points are wrapped back
with :func:`seam_split`, which cuts a set crossing x = 360 into two polygons that each reach the
seam, so the official renderer (which triangulates each polygon on its own) covers the whole region.

The *energy map* of a detection (:func:`energy_map`) is what the official renderer would draw at
1 px/degree: a dense pixel set (integer points whose pixels touch each other) is taken as is;
anything else is linearly interpolated over the Delaunay triangulation of each group of touching
polygons (a dense regular lattice is triangulated cell by cell, as Delaunay would inside it), with fewer than 3 points (or a triangle too small to hold a pixel) drawn as the pixels
the points round to. ``spread`` optionally extends a map beyond its points (nearest pixel's value
times a Gaussian fall-off of the distance), which turns sparse peaks into a region.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay, QhullError

from calib.tables import POLYGONS

WIDTH, HEIGHT = 360, 181  # lattice columns x = 0..359, rows y = 0..180
XY_DECIMALS, E_DECIMALS = 4, 6  # emitted numbers: enough precision, short JSON
_POINT_FIELDS = [pa.field("x", pa.float64()), pa.field("y", pa.float64()), pa.field("e", pa.float64())]


# ----------------------------------------------------------------------------------------------
# points column <-> flat numpy arrays
@dataclass(frozen=True)
class FlatPoints:
    """The ``points`` column of a table as flat arrays: detection i has polygons
    ``ann_off[i]:ann_off[i+1]``; polygon j has points ``poly_off[j]:poly_off[j+1]`` of ``xye``."""

    ann_off: np.ndarray
    poly_off: np.ndarray
    xye: np.ndarray  # (n_points, 3) float64

    def __len__(self) -> int:
        return len(self.ann_off) - 1

    def polygons(self, i: int) -> list[np.ndarray]:
        """Detection i's non-empty polygons, each an (k, 3) array of x, y, e."""
        out = []
        for j in range(self.ann_off[i], self.ann_off[i + 1]):
            a, b = self.poly_off[j], self.poly_off[j + 1]
            if b > a:
                out.append(self.xye[a:b])
        return out

    def n_points(self) -> np.ndarray:
        """Number of points of each detection."""
        return self.poly_off[self.ann_off[1:]] - self.poly_off[self.ann_off[:-1]]

    def detection_of_point(self) -> np.ndarray:
        """Index of the detection owning each point."""
        return np.repeat(np.arange(len(self)), self.n_points())


def flatten(points: pl.Series) -> FlatPoints:
    """Flat arrays of a ``points`` column (list of polygons of struct{x, y, e}); nulls are empty."""
    arr = points.to_arrow()
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if len(arr) == 0:
        return FlatPoints(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros((0, 3)))
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar([], arr.type))
    ann_off = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    polys = arr.values
    poly_off = polys.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    leaf = polys.values
    xye = np.column_stack([leaf.field(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in "xye"])
    # Slices of a larger array keep absolute offsets: rebase them.
    poly_off = poly_off[ann_off[0]: ann_off[-1] + 1]
    xye = xye[poly_off[0]: poly_off[-1]] if len(xye) else xye.reshape(0, 3)
    return FlatPoints(ann_off - ann_off[0], poly_off - poly_off[0], xye.reshape(-1, 3))


def polygons_series(groups: list[list[np.ndarray]], name: str = "points") -> pl.Series:
    """A ``points`` column from, per detection, a list of (k, 3) arrays (one per polygon)."""
    ann_counts = np.fromiter((len(g) for g in groups), np.int64, len(groups))
    polys = [p for g in groups for p in g]
    poly_counts = np.fromiter((len(p) for p in polys), np.int64, len(polys))
    flat = np.concatenate([np.asarray(p, np.float64).reshape(-1, 3) for p in polys]) if polys else np.zeros((0, 3))
    struct = pa.StructArray.from_arrays([pa.array(flat[:, k]) for k in range(3)], fields=_POINT_FIELDS)
    inner = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(poly_counts)]), pa.int32()), struct)
    outer = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(ann_counts)]), pa.int32()), inner)
    return pl.Series(name, outer).cast(POLYGONS)


# ----------------------------------------------------------------------------------------------
# seam
def unwrap_x(x: np.ndarray) -> np.ndarray:
    """x values moved across the seam so they are contiguous: the circle is cut at the largest gap
    between sorted x (mod 360); the result lies in [s, s + 360) with s = its minimum in [0, 360).
    On ties the wrap-around gap wins, so a set that does not cross the seam is left unchanged."""
    x = np.mod(np.asarray(x, np.float64), 360.0)
    if x.size < 2:
        return x
    xs = np.unique(x)
    if xs.size < 2:
        return x
    gaps = np.diff(xs)
    k = int(np.argmax(gaps))
    if xs[0] + 360.0 - xs[-1] >= gaps[k]:
        return x
    start = xs[k + 1]
    return np.where(x >= start, x, x + 360.0)


def _shift_to_canvas(xu: np.ndarray) -> np.ndarray:
    """Shift an unwrapped set by a multiple of 360 so that its minimum is in [0, 360)."""
    if xu.size == 0:
        return xu
    return xu - 360.0 * math.floor(float(np.min(xu)) / 360.0)


def hull_crossing(xy: np.ndarray, x_line: float) -> tuple[float, float] | None:
    """The y interval where the convex hull of ``xy`` meets the vertical line x = ``x_line``."""
    try:
        hull = ConvexHull(xy)
    except (QhullError, ValueError):
        return None
    v = xy[hull.vertices]
    a, b = v, np.roll(v, -1, axis=0)
    lo, hi = np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 0], b[:, 0])
    hit = (lo <= x_line) & (x_line <= hi) & (hi > lo)
    if not hit.any():
        return None
    t = (x_line - a[hit, 0]) / (b[hit, 0] - a[hit, 0])
    ys = a[hit, 1] + t * (b[hit, 1] - a[hit, 1])
    return float(ys.min()), float(ys.max())


def seam_support(xye: np.ndarray, step: float) -> np.ndarray:
    """Points on the line x = 360 (unwrapped) carrying the linear interpolation of ``xye``: where
    its convex hull crosses that line, at both ends of the crossing and every ``step`` degrees."""
    cross = hull_crossing(xye[:, :2], 360.0)
    if cross is None:
        return np.zeros((0, 3))
    y0, y1 = cross
    inner = np.arange(math.ceil(y0 / step) * step, y1, step) if step > 0 else np.zeros(0)
    ys = np.unique(np.concatenate([[y0, y1], inner]))
    # A hair inside the hull so that floating-point error does not put the ends outside it.
    eps = 1e-7 * max(1.0, y1 - y0)
    ys_in = np.clip(ys, y0 + eps, y1 - eps) if y1 - y0 > 2 * eps else np.full_like(ys, 0.5 * (y0 + y1))
    vals = interpolate_at(xye, np.full_like(ys_in, 360.0), ys_in)
    ok = np.isfinite(vals)
    return np.column_stack([np.full(ok.sum(), 360.0), ys[ok], np.maximum(vals[ok], 0.0)])


def seam_split(xu, y, e, *, support_step: float | None = None) -> list[np.ndarray]:
    """Wrap an unwrapped point set back onto the canvas as polygons (arrays of x, y, e).

    A set that crosses x = 360 becomes two polygons: ``x <= 360`` and ``x >= 360`` (shifted by
    -360); points exactly on the seam go to both (as 360 and 0). With ``support_step``, support
    points on the seam carrying the set's linear interpolation (:func:`seam_support`, skipping rows
    that already have a point there) are added to both sides, so each polygon's triangulation
    reaches the seam and the two halves render as the whole. y is clipped to [0, 180]."""
    xu = _shift_to_canvas(np.asarray(xu, np.float64))
    pts = np.column_stack([xu, np.clip(np.asarray(y, np.float64), 0.0, 180.0), np.asarray(e, np.float64)])
    if pts.size == 0:
        return []
    if pts[:, 0].max() <= 360.0:
        return [pts]
    if support_step is not None:
        extra = seam_support(pts, support_step)
        taken = pts[pts[:, 0] == 360.0, 1]
        pts = np.concatenate([pts, extra[~np.isin(extra[:, 1], taken)]])
    left = pts[pts[:, 0] <= 360.0]
    right = pts[pts[:, 0] >= 360.0].copy()
    right[:, 0] -= 360.0
    return [p for p in (left, right) if len(p)]


def round_points(pts: np.ndarray) -> np.ndarray:
    """Emitted numbers rounded (coordinates to 4, intensities to 6 decimals) and kept on the canvas."""
    out = np.empty_like(pts)
    out[:, 0] = np.clip(np.round(pts[:, 0], XY_DECIMALS), 0.0, 360.0)
    out[:, 1] = np.clip(np.round(pts[:, 1], XY_DECIMALS), 0.0, 180.0)
    out[:, 2] = np.round(pts[:, 2], E_DECIMALS)
    return out


# ----------------------------------------------------------------------------------------------
# boxes
def detection_boxes(fp: FlatPoints) -> np.ndarray:
    """Per detection (x0, x1, y0, y1): the seam-aware bounding box of its points in unwrapped x
    (x0 in [0, 360), x1 >= x0, possibly beyond 360); NaN rows for detections without points."""
    n = len(fp)
    out = np.full((n, 4), np.nan)
    if fp.xye.size == 0:
        return out
    det = fp.detection_of_point()
    x = np.mod(fp.xye[:, 0], 360.0)
    y = fp.xye[:, 1]
    order = np.lexsort((x, det))
    xs, ds = x[order], det[order]
    has = fp.n_points() > 0
    first = fp.poly_off[fp.ann_off[:-1]][has]  # sorted array keeps each detection's block in place
    last = fp.poly_off[fp.ann_off[1:]][has] - 1
    ids = np.flatnonzero(has)
    wrap_gap = xs[first] + 360.0 - xs[last]
    gaps = np.diff(xs)
    same = ds[1:] == ds[:-1]
    gaps = np.where(same, gaps, -np.inf)
    # Largest internal gap per detection: first maximum in sorted order.
    if gaps.size:
        g_order = np.lexsort((np.arange(gaps.size), -gaps, ds[:-1]))
        g_det = ds[:-1][g_order]
        firsts = np.r_[True, g_det[1:] != g_det[:-1]]
        best_idx = g_order[firsts]
        best_det = g_det[firsts]
        best_gap = np.full(n, -np.inf)
        best_pos = np.zeros(n, np.int64)
        best_gap[best_det] = gaps[best_idx]
        best_pos[best_det] = best_idx
    else:
        best_gap = np.full(n, -np.inf)
        best_pos = np.zeros(n, np.int64)
    cut = best_gap[ids] > wrap_gap
    x0 = np.where(cut, xs[np.minimum(best_pos[ids] + 1, xs.size - 1)], xs[first])
    x1 = np.where(cut, xs[best_pos[ids]] + 360.0, xs[last])
    ymin = np.full(n, np.inf)
    ymax = np.full(n, -np.inf)
    np.minimum.at(ymin, det, y)
    np.maximum.at(ymax, det, y)
    out[ids, 0], out[ids, 1] = x0, x1
    out[ids, 2], out[ids, 3] = ymin[ids], ymax[ids]
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of seam-aware boxes (rows x0, x1, y0, y1 as from :func:`detection_boxes`).

    Boxes are pixel-inclusive at 1 px/degree (a single point is a 1 x 1 box); x overlap is
    counted on the circle (the other box shifted by -360, 0 and +360)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    wa = np.minimum(a[:, 1] - a[:, 0] + 1.0, 360.0)
    wb = np.minimum(b[:, 1] - b[:, 0] + 1.0, 360.0)
    ix = np.zeros((len(a), len(b)))
    for shift in (-360.0, 0.0, 360.0):
        lo = np.maximum(a[:, None, 0], b[None, :, 0] + shift)
        hi = np.minimum(a[:, None, 1], b[None, :, 1] + shift)
        ix += np.clip(hi - lo + 1.0, 0.0, None)
    ix = np.minimum(ix, np.minimum(wa[:, None], wb[None, :]))
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 2], b[None, :, 2]) + 1.0, 0.0, None)
    inter = ix * iy
    area_a = wa * (a[:, 3] - a[:, 2] + 1.0)
    area_b = wb * (b[:, 3] - b[:, 2] + 1.0)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)


# ----------------------------------------------------------------------------------------------
# energy maps
@dataclass(frozen=True)
class EnergyMap:
    """A detection's energy at 1 px/degree: ``values[j, i]`` is the energy of pixel
    (x = x0 + i, y = y0 + j), x unwrapped. ``points`` holds the detection's own points (x unwrapped)."""

    x0: int
    y0: int
    values: np.ndarray  # (h, w) float64, >= 0
    points: np.ndarray  # (k, 3) x (unwrapped), y, e

    @property
    def peak(self) -> float:
        return float(self.values.max()) if self.values.size else 0.0

    @property
    def empty(self) -> bool:
        return self.peak <= 0.0

    def pixels(self, min_value: float = 0.0) -> np.ndarray:
        """(k, 3) x (unwrapped), y, e of the pixels with energy > 0 and >= ``min_value``,
        in row-major order (y, then x)."""
        jj, ii = np.nonzero((self.values > 0) & (self.values >= min_value))
        return np.column_stack([ii + self.x0, jj + self.y0, self.values[jj, ii]]).astype(np.float64)

    def sample(self, qx, qy) -> np.ndarray:
        """Energy at arbitrary (unwrapped) positions: bilinear between pixels, 0 off the map."""
        qx = np.asarray(qx, np.float64) - self.x0
        qy = np.asarray(qy, np.float64) - self.y0
        if self.values.size == 0:
            return np.zeros(qx.shape)
        return np.maximum(ndimage.map_coordinates(self.values, [qy.ravel(), qx.ravel()], order=1, mode="constant",
                                                  cval=0.0).reshape(qx.shape), 0.0)

    def canvas(self, normalize: bool = True) -> np.ndarray:
        """The map on the full 181 x 360 lattice (float32, x wrapped; peak 1 when ``normalize``)."""
        out = np.zeros((HEIGHT, WIDTH), np.float32)
        if self.values.size == 0:
            return out
        h, w = self.values.shape
        cols = np.mod(np.arange(self.x0, self.x0 + w), WIDTH)
        rows = np.arange(self.y0, self.y0 + h)
        block = self.values
        if normalize and self.peak > 1e-12:
            block = block / self.peak
        # Columns that land on the same canvas column (a map wider than 360) combine by max.
        np.maximum.at(out, (rows[:, None], cols[None, :]), block.astype(np.float32))
        return out


def is_pixel_set(pts: np.ndarray, min_touching: float = 0.9) -> bool:
    """True for a dense pixel set: integer points, most of which have a 4-neighbour in the set."""
    if len(pts) < 3:
        return False
    x, y = pts[:, 0], pts[:, 1]
    if not (np.all(x == np.round(x)) and np.all(y == np.round(y))):
        return False
    xi = (x - x.min()).astype(np.int64) + 1
    yi = (y - y.min()).astype(np.int64) + 1
    occ = np.zeros((yi.max() + 2, xi.max() + 2), bool)  # a free border: no wrap-around neighbours
    occ[yi, xi] = True
    touching = occ[yi, xi - 1] | occ[yi, xi + 1] | occ[yi - 1, xi] | occ[yi + 1, xi]
    return bool(touching.mean() >= min_touching)


def _triangulate(xy: np.ndarray) -> Delaunay | None:
    try:
        return Delaunay(xy)
    except (QhullError, ValueError):
        return None


def _barycentric(tri_xy: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Barycentric weights (k, 3) of points q (k, 2) in triangles tri_xy (k, 3, 2); NaN for flat
    triangles. (Computed directly: scipy's ``Delaunay.transform`` can be slow on small inputs.)"""
    a = tri_xy[:, 0]
    v0 = tri_xy[:, 1] - a
    v1 = tri_xy[:, 2] - a
    v2 = q - a
    d00 = (v0 * v0).sum(1)
    d01 = (v0 * v1).sum(1)
    d11 = (v1 * v1).sum(1)
    d20 = (v2 * v0).sum(1)
    d21 = (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    flat = np.abs(den) <= 1e-12 * np.maximum(d00 * d11, 1e-300)
    den = np.where(flat, np.nan, den)
    b1 = (d11 * d20 - d01 * d21) / den
    b2 = (d00 * d21 - d01 * d20) / den
    return np.column_stack([1.0 - b1 - b2, b1, b2])


def interpolate_at(pts: np.ndarray, qx, qy) -> np.ndarray:
    """Linear interpolation of (x, y, e) points over their Delaunay triangulation at (qx, qy);
    NaN outside the hull or when the points do not triangulate. Meant for a few queries."""
    qx = np.asarray(qx, np.float64).ravel()
    qy = np.asarray(qy, np.float64).ravel()
    out = np.full(qx.shape, np.nan)
    tri = _triangulate(pts[:, :2]) if len(pts) >= 3 else None
    if tri is None or qx.size == 0:
        return out
    sim = tri.simplices
    m = len(sim)
    k = np.repeat(np.arange(qx.size), m)
    t = np.tile(np.arange(m), qx.size)
    w = _barycentric(pts[sim[t], :2], np.column_stack([qx[k], qy[k]]))
    inside = np.all(w >= -1e-9, axis=1)
    v = np.where(inside, (w * pts[sim[t], 2]).sum(axis=1), np.nan)
    # First containing triangle per query (a point on a shared edge gets the same value from both).
    v = v.reshape(qx.size, m)
    has = inside.reshape(qx.size, m).any(axis=1)
    first = np.argmax(inside.reshape(qx.size, m), axis=1)
    out[has] = v[has, first[has]]
    return out


# The triangles of a lattice cell, as corner offsets in cells: the two halves of a full cell (split
# along its (0,0)-(1,1) diagonal) and the two other shapes a cell with three corners can have.
_CELL_SHAPES = (((0, 0), (1, 0), (1, 1)), ((0, 0), (1, 1), (0, 1)), ((1, 0), (1, 1), (0, 1)), ((0, 0), (1, 0), (0, 1)))


@dataclass(frozen=True)
class _Lattice:
    step: float
    x0: float
    y0: float
    triangles: list  # per shape of _CELL_SHAPES: (corners (k, 3) point indices, cell i (k,), cell j (k,))

    def simplices(self) -> np.ndarray:
        return np.concatenate([t[0] for t in self.triangles])


def _lattice(pts: np.ndarray, min_points: int = 10, min_fill: float = 0.5) -> _Lattice | None:
    """The cell-by-cell triangulation of a dense regular lattice (equal spacing in x and y, most
    sites present): two triangles per full cell, one per cell with three corners, as Delaunay
    makes inside a lattice, without Qhull (slow on the many co-circular points of a lattice).
    None when the points are not such a lattice."""
    if len(pts) < min_points:
        return None
    ux, uy = np.unique(pts[:, 0]), np.unique(pts[:, 1])
    if len(ux) < 2 or len(uy) < 2:
        return None
    step = float(np.diff(ux).min())
    if step <= 0 or abs(float(np.diff(uy).min()) - step) > 1e-9 * max(step, 1.0):
        return None
    fi = (pts[:, 0] - ux[0]) / step
    fj = (pts[:, 1] - uy[0]) / step
    i, j = np.round(fi).astype(np.int64), np.round(fj).astype(np.int64)
    if np.abs(fi - i).max() > 1e-6 or np.abs(fj - j).max() > 1e-6:
        return None
    w, h = int(i.max()) + 1, int(j.max()) + 1
    if len(pts) < min_fill * w * h:
        return None
    grid = np.full((h, w), -1, np.int64)
    grid[j, i] = np.arange(len(pts))
    if (grid >= 0).sum() != len(pts):  # repeated sites: leave them to Qhull
        return None
    corner = {(0, 0): grid[:-1, :-1], (1, 0): grid[:-1, 1:], (0, 1): grid[1:, :-1], (1, 1): grid[1:, 1:]}
    corner = {k: v.ravel() for k, v in corner.items()}
    has = {k: v >= 0 for k, v in corner.items()}
    n_has = sum(v.astype(np.int64) for v in has.values())
    cj, ci = np.divmod(np.arange(corner[(0, 0)].size), w - 1)
    full = n_has == 4
    three = n_has == 3
    sel = [full | (three & ~has[(0, 1)]), full | (three & ~has[(1, 0)]), three & ~has[(0, 0)], three & ~has[(1, 1)]]
    triangles = [(np.column_stack([corner[c][m] for c in shape]), ci[m], cj[m]) for shape, m in zip(_CELL_SHAPES, sel)]
    if not sum(len(t[0]) for t in triangles):
        return None
    return _Lattice(step, float(ux[0]), float(uy[0]), triangles)


@functools.lru_cache(maxsize=64)
def _shape_pattern(shape: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Barycentric weights (k, 3) and offsets (dx, dy) of the pixels inside one triangle shape of a
    cell ``s`` pixels wide."""
    dy, dx = np.mgrid[0: s + 1, 0: s + 1]
    dx, dy = dx.ravel(), dy.ravel()
    tri = np.array(_CELL_SHAPES[shape], np.float64)[None] * s
    w = _barycentric(np.repeat(tri, dx.size, axis=0), np.column_stack([dx, dy]).astype(np.float64))
    inside = np.all(w >= -1e-9, axis=1)
    return w[inside], dx[inside], dy[inside]


def _raster_lattice(lat: _Lattice, e: np.ndarray, values: np.ndarray, x0: int, y0: int) -> bool:
    """Rasterize a lattice whose step and origin are whole degrees: every triangle of a shape holds
    the same pixel pattern, so each shape's barycentric weights are computed once."""
    s = int(round(lat.step))
    ox, oy = int(round(lat.x0)), int(round(lat.y0))
    drew = False
    for shape, (corners, ci, cj) in enumerate(lat.triangles):
        if len(corners) == 0:
            continue
        w, pdx, pdy = _shape_pattern(shape, s)
        v = e[corners] @ w.T  # (triangles, pixels)
        r = (oy + cj[:, None] * s + pdy[None, :] - y0).ravel()
        c = (ox + ci[:, None] * s + pdx[None, :] - x0).ravel()
        v = v.ravel()
        ok = (v > 0) & (r >= 0) & (r < values.shape[0]) & (c >= 0) & (c < values.shape[1])
        if ok.any():
            np.maximum.at(values, (r[ok], c[ok]), v[ok])
            drew = True
    return drew


def _interpolate_component(pts: np.ndarray, values: np.ndarray, x0: int, y0: int) -> bool:
    """Linear interpolation of ``pts`` over their Delaunay triangulation (a dense regular lattice's
    cell-by-cell one) at the pixels inside it, max-combined into ``values``. Rasterized triangle by
    triangle, each visiting only the pixels of its own bounding box (a whole-degree lattice by one
    pixel pattern per triangle shape). False when the points do not triangulate or no pixel falls
    inside."""
    if len(pts) < 3:
        return False
    lat = _lattice(pts)
    if lat is not None:
        whole = lambda v: abs(v - round(v)) < 1e-9  # noqa: E731
        if whole(lat.step) and whole(lat.x0) and whole(lat.y0):
            return _raster_lattice(lat, pts[:, 2], values, x0, y0)
        sim = lat.simplices()
    else:
        tri = _triangulate(pts[:, :2])
        if tri is None:
            return False
        sim = tri.simplices
    tx, ty = pts[sim, 0], pts[sim, 1]
    cx0 = np.ceil(tx.min(axis=1) - 1e-9).astype(np.int64)
    cx1 = np.floor(tx.max(axis=1) + 1e-9).astype(np.int64)
    cy0 = np.ceil(ty.min(axis=1) - 1e-9).astype(np.int64)
    cy1 = np.floor(ty.max(axis=1) + 1e-9).astype(np.int64)
    nx = np.clip(cx1 - cx0 + 1, 0, None)
    ny = np.clip(cy1 - cy0 + 1, 0, None)
    count = nx * ny
    total = int(count.sum())
    if total == 0:
        return False
    k = np.repeat(np.arange(len(sim)), count)
    local = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    qx = cx0[k] + local % nx[k]
    qy = cy0[k] + local // nx[k]
    w = _barycentric(pts[sim[k], :2], np.column_stack([qx, qy]).astype(np.float64))
    inside = np.all(w >= -1e-9, axis=1)
    if not inside.any():
        return False
    v = (w[inside] * pts[sim[k[inside]], 2]).sum(axis=1)
    pos = v > 0
    if not pos.any():
        return False
    r = qy[inside][pos] - y0
    c = qx[inside][pos] - x0
    ok = (r >= 0) & (r < values.shape[0]) & (c >= 0) & (c < values.shape[1])
    np.maximum.at(values, (r[ok], c[ok]), v[pos][ok])
    return True


def _draw_pixels(pts: np.ndarray, values: np.ndarray, x0: int, y0: int) -> None:
    c = np.round(pts[:, 0]).astype(np.int64) - x0
    r = np.round(pts[:, 1]).astype(np.int64) - y0
    ok = (r >= 0) & (r < values.shape[0]) & (c >= 0) & (c < values.shape[1])
    np.maximum.at(values, (r[ok], c[ok]), np.maximum(pts[ok, 2], 0.0))


def energy_map(polygons: list[np.ndarray], *, spread: float = 0.0, pad: float = 0.0) -> EnergyMap:
    """The energy map of one detection given its polygons ((k, 3) arrays of x, y, e).

    ``spread`` (degrees): 0 keeps the map to the points; a positive value fills every pixel off
    the points with the value of the nearest pixel on them times exp(-d^2 / (2 spread^2)) (d in
    degrees), over a lattice grown by 3 spread; ``inf`` fills with the nearest value, no decay.
    ``pad`` (degrees) grows the lattice further (the room an emitter needs around the points)."""
    polys = [np.asarray(p, np.float64).reshape(-1, 3) for p in polygons if len(p)]
    if not polys:
        return EnergyMap(0, 0, np.zeros((0, 0)), np.zeros((0, 3)))
    sizes = [len(p) for p in polys]
    allp = np.concatenate(polys)
    xu = unwrap_x(allp[:, 0])
    allp = np.column_stack([xu, allp[:, 1], allp[:, 2]])
    grow = pad + (3.0 * spread if 0 < spread < np.inf else 0.0)
    xlo = math.floor(xu.min() - grow)
    xhi = math.ceil(xu.max() + grow)
    if xhi - xlo + 1 > WIDTH:  # never wider than the circle: trim the growth evenly
        extra = xhi - xlo + 1 - WIDTH
        xlo += extra // 2
        xhi -= extra - extra // 2
    ylo = max(0, math.floor(allp[:, 1].min() - grow))
    yhi = min(HEIGHT - 1, math.ceil(allp[:, 1].max() + grow))
    values = np.zeros((yhi - ylo + 1, xhi - xlo + 1))
    if is_pixel_set(allp):
        _draw_pixels(allp, values, xlo, ylo)
    else:
        for pts in np.split(allp, np.cumsum(sizes)[:-1]):  # each polygon on its own, as the scorer draws
            if not _interpolate_component(pts, values, xlo, ylo):
                _draw_pixels(pts, values, xlo, ylo)
    if spread > 0 and values.max() > 0:
        off = values <= 0
        dist, (ri, ci) = ndimage.distance_transform_edt(off, return_indices=True)
        fill = values[ri, ci]
        if np.isfinite(spread):
            fill = fill * np.exp(-(dist ** 2) / (2.0 * spread ** 2))
        values = np.where(off, fill, values)
    return EnergyMap(xlo, ylo, values, allp)


def polygon_maps(polygons: list[np.ndarray], *, spread: float = 0.0, pad: float = 0.0) -> list[EnergyMap]:
    """One :func:`energy_map` per polygon: emitters rewrite each polygon on its own, keeping the
    input's polygons (separate lobes, the halves of a blob cut at the seam or over a pole) as the
    scorer draws them, each triangulated alone."""
    return [energy_map([p], spread=spread, pad=pad) for p in polygons if len(p)]


def render(polygons: list[np.ndarray], *, normalize: bool = True) -> np.ndarray:
    """A detection's energy map on the full 181 x 360 lattice (float32, peak 1 when normalized)."""
    return energy_map(polygons).canvas(normalize=normalize)


def soft_iou_matrix(maps: np.ndarray) -> np.ndarray:
    """Pairwise soft IoU sum(min) / sum(max) of maps stacked as (n, H, W); 0 when the union is ~0."""
    n = len(maps)
    flat = np.asarray(maps, np.float32).reshape(n, -1)
    out = np.zeros((n, n))
    for i in range(n):
        inter = np.minimum(flat[i], flat[i:]).sum(axis=1, dtype=np.float64)
        union = np.maximum(flat[i], flat[i:]).sum(axis=1, dtype=np.float64)
        v = np.where(union > 1e-8, inter / np.where(union > 1e-8, union, 1.0), 0.0)
        out[i, i:] = v
        out[i:, i] = v
    return out


@dataclass(frozen=True)
class Mask:
    """A detection's peak-normalised 1 px/degree map kept as its non-zero window: rows
    ``r0 .. r0 + h - 1`` and the (sorted) canvas columns ``cols``; ``values`` is (h, len(cols))."""

    r0: int
    cols: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, polygons: list[np.ndarray]) -> "Mask":
        canvas = render(polygons)
        rows = np.flatnonzero(canvas.any(axis=1))
        if rows.size == 0:
            return cls(0, np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
        cols = np.flatnonzero(canvas.any(axis=0))
        return cls(int(rows[0]), cols, canvas[rows[0]: rows[-1] + 1][:, cols])


def mask_iou(a: Mask, b: Mask) -> float:
    """Soft IoU sum(min) / sum(max) of two masks (0 when the union is ~0), computed on the union of
    their windows: the same value as on the full canvas, at a fraction of the cost."""
    if a.values.size == 0 and b.values.size == 0:
        return 0.0
    r0 = min(a.r0 if a.values.size else b.r0, b.r0 if b.values.size else a.r0)
    r1 = max(a.r0 + a.values.shape[0], b.r0 + b.values.shape[0])
    cols = np.union1d(a.cols, b.cols)
    wa = np.zeros((r1 - r0, cols.size), np.float32)
    wb = np.zeros_like(wa)
    wa[a.r0 - r0: a.r0 - r0 + a.values.shape[0]][:, np.searchsorted(cols, a.cols)] = a.values
    wb[b.r0 - r0: b.r0 - r0 + b.values.shape[0]][:, np.searchsorted(cols, b.cols)] = b.values
    union = float(np.maximum(wa, wb).sum(dtype=np.float64))
    return float(np.minimum(wa, wb).sum(dtype=np.float64)) / union if union > 1e-8 else 0.0
