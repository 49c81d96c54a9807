"""The sphere and its canvas: directions, ACS transforms, the seam, seam-aware boxes.

Angles are degrees. Azimuth φ in (-180, 180], elevation θ in [-90, 90]; the canvas has
``x = (-φ + 180) mod 360`` and ``y = 90 - θ`` (calib.io.seld.to_canvas / from_canvas), x in
[0, 360] (x = 360 is the meridian x = 0), y in [0, 180].

**The seam rule** (one for every consumer): a detection's x values, sorted, are cut at their widest
gap when that gap exceeds 180 degrees, and the x at or left of it move by +360, so the points lie
contiguously on a 720-wide strip. This is the official renderer's rule (which applies it per
polygon); a set that fits in half the circle is always unwrapped to its shortest arc, and a set
spread over more than half of it is left as it is.

The test-time ACS (audio channel swap) transforms for a tetrahedral MIC (or FOA) array are the
eight of Mazzon et al. 2019 ("First order ambisonics domain spatial augmentation for DNN-based
direction of arrival estimation", DCASE 2019), view k applying ``ACS_TRANSFORMS[k]``:

====  ==================  =======================
view  (φ, θ) →            inverse (φ', θ') →
====  ==================  =======================
0     (φ − 90, −θ)        (φ' + 90, −θ')
1     (−φ − 90, θ)        (−φ' − 90, θ')
2     (φ, θ) identity     (φ', θ')
3     (−φ, −θ)            (−φ', −θ')
4     (φ + 90, −θ)        (φ' − 90, −θ')
5     (−φ + 90, θ)        (−φ' + 90, θ')
6     (φ + 180, θ)        (φ' − 180, θ')
7     (−φ + 180, −θ)      (−φ' + 180, −θ')
====  ==================  =======================

Each is ``φ' = s·φ + c``, ``θ' = t·θ`` with s, t in {−1, 1}, so the inverse is
``φ = s·(φ' − c)``, ``θ = t·θ'`` (tests check every inverse by composition).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

# the seam rule lives beside FlatPoints (its seam_x); this module's API names it too
from calib.canvas.points import (CANVAS_WIDTH, SEAM_GAP, FlatPoints, concat, offsets_of, order_by_set_x_y, ragged_arange,
                                 segment_ids, unwrap)
from calib.io.seld import from_canvas, to_canvas

__all__ = [
    "ACS_TRANSFORMS", "acs_forward", "acs_inverse", "acs_canvas_coefficients", "transform_points",
    "wrap_azimuth", "unit_vectors", "vector_directions", "great_circle", "great_circle_haversine",
    "pairwise_great_circle", "mean_direction", "from_canvas", "to_canvas", "CANVAS_WIDTH", "SEAM_GAP",
    "unwrap", "Boxes", "boxes", "box_iou", "pair_box_iou", "shift_to_canvas", "seam_crossing_rows",
    "seam_split", "seam_support_rows", "wrap_sets", "group_sets",
]


#: (s, c, t): azimuth → s·φ + c (degrees), elevation → t·θ; index = view.
ACS_TRANSFORMS: tuple[tuple[int, float, int], ...] = (
    (1, -90.0, -1),
    (-1, -90.0, 1),
    (1, 0.0, 1),
    (-1, 0.0, -1),
    (1, 90.0, -1),
    (-1, 90.0, 1),
    (1, 180.0, 1),
    (-1, 180.0, -1),
)


# ----------------------------------------------------------------------------------------------
# directions
def wrap_azimuth(az):
    """Azimuth in degrees wrapped to (-180, 180]."""
    az = np.mod(np.asarray(az, dtype=np.float64) + 180.0, 360.0) - 180.0
    return np.where(az <= -180.0, az + 360.0, az)


def _view_coefficients(view: int) -> tuple[int, float, int]:
    if not 0 <= int(view) < len(ACS_TRANSFORMS):
        raise ValueError(f"ACS view {view} outside 0..{len(ACS_TRANSFORMS) - 1}")
    return ACS_TRANSFORMS[int(view)]


def acs_forward(azimuth, elevation, view: int):
    """Direction as seen by ACS view ``view`` (its channel swap applied to the scene)."""
    s, c, t = _view_coefficients(view)
    return wrap_azimuth(s * np.asarray(azimuth, dtype=np.float64) + c), t * np.asarray(elevation, dtype=np.float64)


def acs_inverse(azimuth, elevation, view: int):
    """Map a direction estimated on view ``view`` back to the original scene."""
    s, c, t = _view_coefficients(view)
    return wrap_azimuth(s * (np.asarray(azimuth, dtype=np.float64) - c)), t * np.asarray(elevation, dtype=np.float64)


def acs_canvas_coefficients(view: int, *, inverse: bool = True) -> tuple[float, float, float, float]:
    """(a, b, p, q) with ``x' = (a·x + b) mod 360`` and ``y' = p·y + q`` on the canvas.

    From φ = 180 − x and θ = 90 − y: φ' = s·φ + c gives x' = s·x + 180 − 180·s − c, and θ' = t·θ
    gives y' = t·y + 90 − 90·t. The inverse transform has s' = s, c' = −s·c, t' = t."""
    s, c, t = _view_coefficients(view)
    if inverse:
        c = -s * c
    return float(s), 180.0 - 180.0 * s - c, float(t), 90.0 - 90.0 * t


def transform_points(points: pl.Expr, a: float, b: float, p: float, q: float) -> pl.Expr:
    """Apply ``x' = (a·x + b) mod 360``, ``y' = p·y + q`` to every point of a polygons column,
    keeping polygons, order and intensities."""
    pt = pl.element()
    return points.list.eval(pt.list.eval(pl.struct(
        x=(pt.struct.field("x") * a + b) % 360.0,
        y=pt.struct.field("y") * p + q,
        e=pt.struct.field("e"),
    )))


def unit_vectors(azimuth, elevation) -> np.ndarray:
    """(..., 3) unit vectors (x forward, y left, z up) of directions in degrees."""
    az = np.radians(np.asarray(azimuth, dtype=np.float64))
    el = np.radians(np.asarray(elevation, dtype=np.float64))
    ce = np.cos(el)
    return np.stack([ce * np.cos(az), ce * np.sin(az), np.sin(el)], axis=-1)


def vector_directions(vectors) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth, elevation) in degrees of (..., 3) vectors (any non-zero length)."""
    v = np.asarray(vectors, dtype=np.float64)
    az = np.degrees(np.arctan2(v[..., 1], v[..., 0]))
    el = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return wrap_azimuth(az), el


def great_circle(az1, el1, az2, el2) -> np.ndarray:
    """Great-circle distance in degrees, broadcasting; atan2 form, accurate at 0° and 180°."""
    u, v = unit_vectors(az1, el1), unit_vectors(az2, el2)
    cross = np.linalg.norm(np.cross(u, v), axis=-1)
    return np.degrees(np.arctan2(cross, np.sum(u * v, axis=-1)))


def great_circle_haversine(az0, el0, az1, el1) -> np.ndarray:
    """Angle in degrees between directions (degrees), by the haversine formula (what the gaussian
    emitter's intensities are defined with)."""
    az0, el0, az1, el1 = (np.radians(np.asarray(v, np.float64)) for v in (az0, el0, az1, el1))
    h = np.sin((el1 - el0) / 2) ** 2 + np.cos(el0) * np.cos(el1) * np.sin((az1 - az0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def pairwise_great_circle(azimuth, elevation) -> np.ndarray:
    """(n, n) matrix of great-circle distances in degrees between n directions."""
    az, el = np.asarray(azimuth, dtype=np.float64), np.asarray(elevation, dtype=np.float64)
    return great_circle(az[:, None], el[:, None], az[None, :], el[None, :])


def mean_direction(azimuth, elevation, weights=None) -> tuple[float, float]:
    """Mean direction on the sphere: the (weighted) mean of unit vectors, renormalized."""
    u = unit_vectors(azimuth, elevation)
    w = np.ones(len(u)) if weights is None else np.asarray(weights, dtype=np.float64)
    m = (u * w[:, None]).sum(axis=0)
    if not np.linalg.norm(m) > 1e-12:
        raise ValueError("mean direction undefined: the directions cancel out")
    az, el = vector_directions(m)
    return float(az), float(el)


# ----------------------------------------------------------------------------------------------
# the seam
def shift_to_canvas(xu: np.ndarray, seg: np.ndarray, n: int) -> np.ndarray:
    """Unwrapped x of segments shifted by a multiple of 360 each so that each segment's minimum
    lies in [0, 360)."""
    if xu.size == 0:
        return xu
    lo = np.full(n, np.inf)
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    if (seg[starts[1:]] > seg[starts[:-1]]).all():  # segments laid out in order: one pass
        lo[seg[starts]] = np.minimum.reduceat(xu, starts)
    else:
        np.minimum.at(lo, seg, xu)
    shift = CANVAS_WIDTH * np.floor(lo / CANVAS_WIDTH)
    return xu - shift[seg]


def _canvas_x(sets: FlatPoints) -> np.ndarray:
    """:func:`shift_to_canvas` of the x of each detection of ``sets`` (its points one run): ``sets.x``
    itself where no set moves (x - 0.0 is x)."""
    if sets.n_points == 0:
        return sets.x
    lo = sets.reduce(np.minimum, sets.x, empty=np.inf)
    shift = CANVAS_WIDTH * np.floor(lo / CANVAS_WIDTH)
    if not shift[sets.count > 0].any():  # all 0.0 (NaN counts as a shift)
        return sets.x
    return sets.x - np.repeat(shift, sets.count)


def _clip_rows(y: np.ndarray) -> np.ndarray:
    """``y`` clipped to [0, 180] (``y`` itself where every value is inside: the clip returns each
    as it is, -0.0 included)."""
    if y.size == 0 or (y.min() >= 0.0 and y.max() <= 180.0):  # NaN fails both: clipped (kept NaN)
        return y
    return np.minimum(np.maximum(y, 0.0), 180.0)


# ----------------------------------------------------------------------------------------------
# boxes
@dataclass(frozen=True)
class Boxes:
    """Seam-aware bounding box of each detection's points, in canvas degrees: x0 <= x1 on the
    720-wide strip (x1 possibly beyond 360), y0 <= y1. NaN for a detection without
    points (:meth:`zero_filled` makes those all-zero boxes)."""

    x0: np.ndarray
    x1: np.ndarray
    y0: np.ndarray
    y1: np.ndarray

    @property
    def w(self) -> np.ndarray:
        """Width in degrees (0 for a single point)."""
        return self.x1 - self.x0

    @property
    def h(self) -> np.ndarray:
        return self.y1 - self.y0

    @property
    def cx(self) -> np.ndarray:
        """Centre column on the strip (not wrapped)."""
        return self.x0 + self.w / 2

    @property
    def cy(self) -> np.ndarray:
        return self.y0 + self.h / 2

    @property
    def empty(self) -> np.ndarray:
        return np.isnan(self.x0)

    def rows(self) -> np.ndarray:
        """(n, 4) rows x0, x1, y0, y1 (what :func:`box_iou` takes)."""
        return np.column_stack([self.x0, self.x1, self.y0, self.y1])

    def zero_filled(self) -> "Boxes":
        return Boxes(*(np.nan_to_num(a, nan=0.0) for a in (self.x0, self.x1, self.y0, self.y1)))


def boxes(fp: FlatPoints) -> Boxes:
    """Seam-aware bounding box of each detection's points (the seam rule of :func:`unwrap`)."""
    sx = fp.seam_x
    return Boxes(fp.reduce(np.minimum, sx, empty=np.nan), fp.reduce(np.maximum, sx, empty=np.nan),
                 fp.reduce(np.minimum, fp.y, empty=np.nan), fp.reduce(np.maximum, fp.y, empty=np.nan))


def _x_overlap(ax0, ax1, bx0, bx1) -> np.ndarray:
    """Pixel-inclusive overlap of x ranges on the circle (the other range shifted by -360, 0, +360),
    at most the narrower width."""
    wa = np.minimum(ax1 - ax0 + 1.0, CANVAS_WIDTH)
    wb = np.minimum(bx1 - bx0 + 1.0, CANVAS_WIDTH)
    ix = 0.0
    for shift in (-CANVAS_WIDTH, 0.0, CANVAS_WIDTH):
        ix = ix + np.clip(np.minimum(ax1, bx1 + shift) - np.maximum(ax0, bx0 + shift) + 1.0, 0.0, None)
    return np.minimum(ix, np.minimum(wa, wb)), wa, wb


def _iou(ax0, ax1, ay0, ay1, bx0, bx1, by0, by1) -> np.ndarray:
    ix, wa, wb = _x_overlap(ax0, ax1, bx0, bx1)
    iy = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0) + 1.0, 0.0, None)
    inter = ix * iy
    union = wa * (ay1 - ay0 + 1.0) + wb * (by1 - by0 + 1.0) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of seam-aware boxes (rows x0, x1, y0, y1 as :meth:`Boxes.rows`).

    Boxes are pixel-inclusive at 1 px/degree (a single point is a 1 x 1 box); x overlap is
    counted on the circle. NaN (empty) boxes overlap nothing."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return _iou(*(a[:, None, k] for k in range(4)), *(b[None, :, k] for k in range(4)))


def pair_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of aligned pairs of boxes: row k of ``a`` with row k of ``b``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return _iou(*(a[:, k] for k in range(4)), *(b[:, k] for k in range(4)))


# ----------------------------------------------------------------------------------------------
# emitted sets back onto the canvas
def seam_crossing_rows(sets: FlatPoints, crossing: np.ndarray, step: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where support points go on the seam for the sets (detections of ``sets``, x unwrapped and
    shifted to the canvas) marked ``crossing``: the rows where the set's convex hull meets the line
    x = 360 -- both ends of that crossing and every multiple of ``step[set]`` between -- less the rows
    that already have a point on it. Returns (set, y, y nudged a hair inside the crossing) arrays.

    The crossing is the hull's, found without building it: the extremes over every pair of a
    column left of the line and a column right of it (and points on it) of where the segment
    joining their extreme points meets the line. A set whose points are all on one row has no
    crossing (its hull is flat)."""
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    ids = np.flatnonzero(crossing)
    if ids.size == 0:
        return empty
    sub = sets.take(ids)
    seg = sub.row
    x, y = sub.x, sub.y
    # per (set, column): lowest and highest y
    order = order_by_set_x_y(seg, x, y, rank=False)  # emitted sets come row-major
    xs, ys, ss = x[order], y[order], seg[order]
    new = np.r_[True, (ss[1:] != ss[:-1]) | (xs[1:] != xs[:-1])]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, xs.size - 1]
    cs, cx, ylo, yhi = ss[first], xs[first], ys[first], ys[last]
    n_sub = ids.size
    y0 = np.full(n_sub, np.inf)
    y1 = np.full(n_sub, -np.inf)
    on = cx == CANVAS_WIDTH
    np.minimum.at(y0, cs[on], ylo[on])
    np.maximum.at(y1, cs[on], yhi[on])
    left = np.flatnonzero(cx < CANVAS_WIDTH)
    right = np.flatnonzero(cx > CANVAS_WIDTH)
    if left.size and right.size:
        # all (left column, right column) pairs of the same set
        n_right = np.bincount(cs[right], minlength=n_sub)
        r_off = offsets_of(n_right)
        per_left = n_right[cs[left]]
        li = np.repeat(left, per_left)
        ri = right[np.repeat(r_off[cs[left]], per_left) + ragged_arange(per_left)]
        t = (CANVAS_WIDTH - cx[li]) / (cx[ri] - cx[li])
        lo_y = ylo[li] + t * (ylo[ri] - ylo[li])
        hi_y = yhi[li] + t * (yhi[ri] - yhi[li])
        np.minimum.at(y0, cs[li], np.minimum(lo_y, hi_y))
        np.maximum.at(y1, cs[li], np.maximum(lo_y, hi_y))
    ymin = sub.reduce(np.minimum, y, empty=np.nan)
    ymax = sub.reduce(np.maximum, y, empty=np.nan)
    ok = np.isfinite(y0) & np.isfinite(y1) & (ymax > ymin) & (sub.count >= 3)
    ok_ids = np.flatnonzero(ok)
    if ok_ids.size == 0:
        return empty
    y0, y1, st = y0[ok_ids], y1[ok_ids], np.asarray(step, np.float64)[ids[ok_ids]]
    # rows: both ends and every multiple of the step strictly between them
    k0 = np.ceil(y0 / st)
    n_inner = np.maximum(np.ceil(y1 / st) - k0, 0).astype(np.int64)  # multiples in [y0, y1)
    rows_set = np.concatenate([np.arange(ok_ids.size), np.arange(ok_ids.size), segment_ids(n_inner)])
    rows_y = np.concatenate([y0, y1, (k0[segment_ids(n_inner)] + ragged_arange(n_inner)) * st[segment_ids(n_inner)]])
    key = np.lexsort((rows_y, rows_set))
    rows_set, rows_y = rows_set[key], rows_y[key]
    keep = np.r_[True, (rows_set[1:] != rows_set[:-1]) | (rows_y[1:] != rows_y[:-1])]
    rows_set, rows_y = rows_set[keep], rows_y[keep]
    # skip rows already holding a point on the seam
    on_pts = np.flatnonzero(sub.x == CANVAS_WIDTH)
    if on_pts.size:
        sub_of_ok = np.full(n_sub, -1)
        sub_of_ok[ok_ids] = np.arange(ok_ids.size)
        taken = np.unique(np.column_stack([sub_of_ok[seg[on_pts]], sub.y[on_pts]]), axis=0)
        hit = (taken[:, 0] >= 0)
        taken = taken[hit]
        if len(taken):
            tk = taken[:, 0] * 1e4 + taken[:, 1]
            rk = rows_set * 1e4 + rows_y
            free = ~np.isin(rk, tk)
            rows_set, rows_y = rows_set[free], rows_y[free]
    # a hair inside the crossing, so that a value read there is inside the set's region
    a, b = y0[rows_set], y1[rows_set]
    eps = 1e-7 * np.maximum(1.0, b - a)
    inside = np.where(b - a > 2 * eps, np.clip(rows_y, a + eps, b - eps), 0.5 * (a + b))
    return ids[ok_ids[rows_set]], rows_y, inside


def seam_split(sets: FlatPoints, on_canvas: bool = False) -> FlatPoints:
    """Emitted sets (the detections of ``sets``, one polygon each, x unwrapped) wrapped back onto
    the canvas as polygons: a set is shifted so that its lowest x is in [0, 360); one reaching past
    x = 360 becomes two polygons, ``x <= 360`` and ``x >= 360`` (shifted by -360), points exactly on
    the seam going to both; y is clipped to [0, 180]. Returns one detection per set with its one or
    two non-empty polygons, points in the set's order."""
    n = sets.n
    if on_canvas:  # shifting and clipping again changes nothing (unless rounding left a lowest x off [0, 360))
        lo = sets.reduce(np.minimum, sets.x, empty=np.inf)
        again = (lo < 0) | ((lo >= CANVAS_WIDTH) & (lo < np.inf)) | np.isnan(lo)  # sets _canvas_x would move
        xu = _canvas_x(sets) if again.any() else sets.x
        y = sets.y
    else:
        xu = _canvas_x(sets)
        y = _clip_rows(sets.y)
    crossing = sets.reduce(np.maximum, xu, empty=0.0) > CANVAS_WIDTH
    whole = FlatPoints(xu, y, sets.e, np.arange(n + 1, dtype=np.int64), sets.poly_off)
    if not crossing.any():
        return whole
    # crossing sets: their points at or left of the seam, then those at or right of it (-360)
    c = np.flatnonzero(crossing)
    sub = whole.take(c)
    left = sub.x <= CANVAS_WIDTH
    right = sub.x >= CANVAS_WIDTH
    n_left = np.bincount(sub.row, weights=left, minlength=c.size).astype(np.int64)
    n_right = np.bincount(sub.row, weights=right, minlength=c.size).astype(np.int64)
    pts = np.concatenate([np.flatnonzero(left), np.flatnonzero(right)])
    half = np.concatenate([np.zeros(int(left.sum()), np.int64), np.ones(int(right.sum()), np.int64)])
    order = np.lexsort((pts, half, sub.row[pts]))
    pts, half = pts[order], half[order]
    counts = np.column_stack([n_left, n_right]).ravel()
    halves = FlatPoints(sub.x[pts] - CANVAS_WIDTH * half, sub.y[pts], sub.e[pts],
                        offsets_of(2 * np.ones(c.size, np.int64)), offsets_of(counts))
    # drop empty halves, then put the split sets back in their places
    halves = _drop_empty_polygons(halves)
    if c.size > _SPLICE_MAX:
        rows = np.arange(n)
        rows[c] = n + np.arange(c.size)
        return concat([whole, halves]).take(rows)
    return _splice(whole, c, halves)


#: up to this many split sets are spliced in by slices (one Python step each), more by a gather
_SPLICE_MAX = 256


def _splice(whole: FlatPoints, c: np.ndarray, halves: FlatPoints) -> FlatPoints:
    """``whole`` (one polygon per detection) with its detections ``c`` (increasing) replaced by the
    detections of ``halves`` (in that order): the runs between them copied as slices."""
    wq, hp, hq = whole.poly_off.tolist(), halves.det_off.tolist(), halves.poly_off.tolist()
    w_count, h_count = whole.poly_count, halves.poly_count
    parts = {"x": [], "y": [], "e": []}
    counts = []
    prev = 0
    bounds = []  # (source, first point, end point) in output order
    for k, i in enumerate(c.tolist()):
        bounds.append((whole, wq[prev], wq[i]))
        counts.append(w_count[prev:i])
        bounds.append((halves, hq[hp[k]], hq[hp[k + 1]]))
        counts.append(h_count[hp[k]: hp[k + 1]])
        prev = i + 1
    bounds.append((whole, wq[prev], wq[-1]))
    counts.append(w_count[prev:])
    for col, out in parts.items():
        for src, a, b in bounds:
            out.append(getattr(src, col)[a:b])
    per_det = np.ones(whole.n, np.int64)
    per_det[c] = np.diff(hp)
    return FlatPoints(np.concatenate(parts["x"]), np.concatenate(parts["y"]), np.concatenate(parts["e"]),
                      offsets_of(per_det), offsets_of(np.concatenate(counts)))


def _drop_empty_polygons(fp: FlatPoints) -> FlatPoints:
    keep = fp.poly_count > 0
    if keep.all():
        return fp
    per_det = np.bincount(fp.det_of_poly[keep], minlength=fp.n)
    return FlatPoints(fp.x, fp.y, fp.e, offsets_of(per_det), offsets_of(fp.poly_count[keep]))


def seam_support_rows(sets: FlatPoints, step) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Support rows for the emitted sets (x unwrapped, as the emitter made them) that cross the
    seam once shifted onto the canvas (:func:`seam_crossing_rows`, ``step`` a number or one per
    set). Returns (set, y, y nudged inside the crossing, x of the seam in the set's own frame):
    the emitter evaluates its own values there and hands them to :func:`wrap_sets`."""
    n = sets.n
    z = np.zeros(0)
    if n == 0 or sets.n_points == 0:
        return np.zeros(0, np.int64), z, z, z
    xu = _canvas_x(sets)
    crossing = sets.reduce(np.maximum, xu, empty=0.0) > CANVAS_WIDTH
    if not crossing.any():
        return np.zeros(0, np.int64), z, z, z
    shifted = sets.with_values(x=xu, y=np.clip(sets.y, 0.0, 180.0))
    s_set, s_y, s_in = seam_crossing_rows(shifted, crossing, np.broadcast_to(np.asarray(step, np.float64), (n,)))
    # each set's shift, as x - xu at its last point
    last = (sets.start + sets.count - 1)[s_set]
    return s_set, s_y, s_in, CANVAS_WIDTH + (sets.x[last] - xu[last])


def wrap_sets(sets: FlatPoints, support=None) -> FlatPoints:
    """:func:`seam_split` of emitted sets (x unwrapped), with support points first where given.

    ``support`` = (set, y, e): points on x = 360 appended to their set (after its own points), so
    each half's triangulation reaches the seam and the two halves render as the whole."""
    n = sets.n
    if n == 0:
        return sets
    xu = _canvas_x(sets)
    y = _clip_rows(sets.y)
    if support is None or len(support[0]) == 0:
        return seam_split(sets.with_values(x=xu, y=y), on_canvas=True)
    s_set, s_y, s_e = (np.asarray(a) for a in support)
    s_set = s_set.astype(np.int64)
    # support points after the set's own, in their order: each point's place in the merged sets
    per_set = np.bincount(s_set, minlength=n)
    off = offsets_of(sets.count + per_set)
    own = np.arange(sets.n_points) + np.repeat(off[:-1] - sets.start, sets.count)
    o = np.argsort(s_set, kind="stable")
    sup = np.empty(s_set.size, np.int64)
    sup[o] = (off[:-1] + sets.count)[s_set[o]] + ragged_arange(per_set)
    total = int(off[-1])
    x_m, y_m, e_m = np.empty(total), np.empty(total), np.empty(total)
    x_m[own], y_m[own], e_m[own] = xu, y, sets.e
    x_m[sup], y_m[sup], e_m[sup] = CANVAS_WIDTH, np.minimum(np.maximum(s_y, 0.0), 180.0), np.maximum(s_e, 0.0)
    return seam_split(FlatPoints(x_m, y_m, e_m, np.arange(n + 1, dtype=np.int64), off), on_canvas=True)


def group_sets(wrapped: FlatPoints, set_det: np.ndarray, n: int) -> tuple[FlatPoints, np.ndarray]:
    """Wrapped sets (one detection per set, sets ordered by detection) regrouped into ``n``
    detections: each detection's polygons are those of its sets, in order. Returns (points, whether
    each detection got any set)."""
    polys_per_set = np.diff(wrapped.det_off)
    per_det = np.bincount(np.asarray(set_det, np.int64), weights=polys_per_set, minlength=n).astype(np.int64)
    has = np.bincount(np.asarray(set_det, np.int64), minlength=n) > 0
    return FlatPoints(wrapped.x, wrapped.y, wrapped.e, offsets_of(per_det), wrapped.poly_off), has
