"""A table's ``points`` column as flat numpy arrays, and the segment reductions taken over them.

Every consumer (emitters, features, selection, fusion) takes :class:`FlatPoints`: the x, y, e of
all points of all detections in row order, with two offset arrays, so a per-detection statistic is a
segment reduction (``np.bincount`` / ``ufunc.reduceat``) instead of a Python loop over rows. It is
built from the Arrow buffers of the column without touching a row in Python (:func:`flatten`) and
turned back into a column the same way (:func:`points_column`). Detection ``i`` owns polygons
``det_off[i]:det_off[i+1]``; polygon ``j`` owns points ``poly_off[j]:poly_off[j+1]``. A detection
without points has an empty run; reductions give it the ``empty`` value their caller chooses.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from calib.tables import POLYGONS

XY_DECIMALS, E_DECIMALS = 4, 6  # emitted numbers: enough precision, short JSON
_POINT_FIELDS = [pa.field("x", pa.float64()), pa.field("y", pa.float64()), pa.field("e", pa.float64())]


def segment_ids(counts: np.ndarray) -> np.ndarray:
    """``[0]*counts[0] + [1]*counts[1] + ...``: the segment of every element of a ragged layout."""
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``concat(arange(c) for c in counts)``: each element's position within its segment."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def order_ranks(v: np.ndarray, lim: int = 1 << 21) -> np.ndarray:
    """Ranks (int64, >= 0) of finite values (at least one) that keep their order and ties,
    -0.0 counting as 0.0: each value's place among the whole numbers from the least value's floor
    up and the distinct non-whole values (``np.unique`` of those alone: mostly whole values, as
    lattices with a few vertices, sort little), or where that could reach ``lim``, its place
    among the distinct values."""
    f = np.floor(v)
    frac = np.flatnonzero(f != v)
    lo, hi = f.min(), f.max()
    if hi - lo + 1 + frac.size >= lim:
        return np.unique(v, return_inverse=True)[1].astype(np.int64).ravel()
    k = f.astype(np.int64) - int(lo)  # whole numbers in [lo, v): k (v whole), k + 1 (else)
    distinct, j = np.unique(v[frac], return_inverse=True)
    below = np.searchsorted(distinct, np.arange(lo, hi + 1))  # non-whole values below each whole one
    r = k + below[k]
    r[frac] = k[frac] + 1 + j.ravel()
    return r


def order_by_set_x_y(seg: np.ndarray, x: np.ndarray, y: np.ndarray, rank: bool = True) -> np.ndarray:
    """``np.lexsort((y, x, seg))``: by set, then x, then y, ties in index order -- by one stable
    sort of packed int64 keys (set, x's rank, y's rank), several times faster than the lexsort.
    Whole numbers (pixels, lattice points) are their own ranks (less their lowest); other finite
    values are ranked by :func:`order_ranks` (-0.0 as 0.0, as the lexsort compares them; not with
    ``rank``: the lexsort, faster on sets already in row-major order). NaN or infinite values, or
    ranges past 2^21: the lexsort itself."""
    seg = np.asarray(seg)
    lim = 1 << 21
    if x.size > 1 and seg.dtype.kind in "iu" and x.size < lim and seg.min() >= 0 and seg.max() < lim:
        with np.errstate(invalid="ignore"):  # NaN, inf: not whole numbers (checked next)
            xi, yi = x.astype(np.int64), y.astype(np.int64)
        whole = (xi == x).all() and (yi == y).all()
        if whole:
            xi -= xi.min()
            yi -= yi.min()
            whole = xi.max() < lim and yi.max() < lim
        if not whole:
            if not (rank and np.isfinite(x).all() and np.isfinite(y).all()):
                return np.lexsort((y, x, seg))
            xi, yi = order_ranks(x, lim), order_ranks(y, lim)
        key = seg.astype(np.int64) << 42
        key |= xi << 21
        key |= yi
        return np.argsort(key, kind="stable")
    return np.lexsort((y, x, seg))


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """Offsets (length n + 1, starting at 0) of segments with these lengths."""
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


@dataclass(frozen=True, eq=False)
class FlatPoints:
    """All points of ``n`` detections (their polygons kept), as flat float64 arrays."""

    x: np.ndarray
    y: np.ndarray
    e: np.ndarray
    det_off: np.ndarray  # int64 (n + 1,): detection i owns polygons det_off[i]:det_off[i+1]
    poly_off: np.ndarray  # int64 (n_polys + 1,): polygon j owns points poly_off[j]:poly_off[j+1]

    # -- shape ---------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of detections."""
        return len(self.det_off) - 1

    def __len__(self) -> int:
        return self.n

    @property
    def n_polys(self) -> int:
        return len(self.poly_off) - 1

    @property
    def n_points(self) -> int:
        return int(self.x.size)

    @cached_property
    def start(self) -> np.ndarray:
        """Index of each detection's first point."""
        return self.poly_off[self.det_off[:-1]]

    @cached_property
    def count(self) -> np.ndarray:
        """Number of points of each detection."""
        return self.poly_off[self.det_off[1:]] - self.start

    @cached_property
    def poly_count(self) -> np.ndarray:
        """Number of points of each polygon."""
        return np.diff(self.poly_off)

    @cached_property
    def row(self) -> np.ndarray:
        """Detection (row) index of every point."""
        return segment_ids(self.count)

    @cached_property
    def poly_of_point(self) -> np.ndarray:
        """Polygon index of every point."""
        return segment_ids(self.poly_count)

    @cached_property
    def det_of_poly(self) -> np.ndarray:
        """Detection index of every polygon."""
        return segment_ids(np.diff(self.det_off))

    @cached_property
    def xye(self) -> np.ndarray:
        """(n_points, 3) x, y, e."""
        return np.column_stack([self.x, self.y, self.e]) if self.x.size else np.zeros((0, 3))

    def polygons(self, i: int) -> list[np.ndarray]:
        """Detection i's non-empty polygons, each an (k, 3) array of x, y, e (for tests and
        inspection; batch code never walks detections one by one)."""
        out = []
        for j in range(int(self.det_off[i]), int(self.det_off[i + 1])):
            a, b = int(self.poly_off[j]), int(self.poly_off[j + 1])
            if b > a:
                out.append(self.xye[a:b])
        return out

    # -- reshaping -----------------------------------------------------------------------------
    def slice(self, a: int, b: int) -> "FlatPoints":
        """Detections a..b-1 (a view: no copy; all of them: this very set, whose arrays then stay
        their own, not views, so that a keeper such as the emitted-detections cache need not copy
        them)."""
        p0, p1 = int(self.det_off[a]), int(self.det_off[b])
        q0, q1 = int(self.poly_off[p0]), int(self.poly_off[p1])
        if a == 0 and b == self.n and p0 == 0 and q0 == 0 and p1 == self.n_polys and q1 == self.x.size:
            return self
        return FlatPoints(self.x[q0:q1], self.y[q0:q1], self.e[q0:q1], self.det_off[a: b + 1] - p0,
                          self.poly_off[p0: p1 + 1] - q0)

    def blocks(self, max_points: int) -> list[tuple[int, int]]:
        """(a, b) ranges of consecutive detections covering all of them in order, each holding at
        most ``max_points`` points (a detection with more is a block of its own): per-point work
        done block by block keeps its temporaries to the size of a block."""
        cum = np.cumsum(self.count)
        out, a = [], 0
        while a < self.n:
            done = int(cum[a - 1]) if a else 0
            b = max(int(np.searchsorted(cum, done + max_points, side="right")), a + 1)
            out.append((a, b))
            a = b
        return out

    def per_polygon(self) -> "FlatPoints":
        """The same points with every polygon its own detection (``det_of_poly`` maps back)."""
        return FlatPoints(self.x, self.y, self.e, np.arange(self.n_polys + 1, dtype=np.int64), self.poly_off)

    def take(self, rows: np.ndarray) -> "FlatPoints":
        """The detections ``rows`` (indices, in that order; repeats allowed), polygons kept."""
        rows = np.asarray(rows, np.int64)
        npoly = np.diff(self.det_off)[rows]
        polys = np.repeat(self.det_off[rows], npoly) + ragged_arange(npoly)
        pcount = self.poly_count[polys]
        pts = np.repeat(self.poly_off[polys], pcount) + ragged_arange(pcount)
        return FlatPoints(self.x[pts], self.y[pts], self.e[pts], offsets_of(npoly), offsets_of(pcount))

    def select(self, rows: np.ndarray) -> tuple["FlatPoints", np.ndarray]:
        """The detections where the boolean ``rows`` is true (in order) and the positions of their
        points in this set."""
        sub = self.take(np.flatnonzero(rows))
        pos = np.flatnonzero(np.asarray(rows, bool)[self.row])
        return sub, pos

    def with_values(self, x=None, y=None, e=None) -> "FlatPoints":
        """The same layout with some coordinate arrays replaced."""
        return FlatPoints(self.x if x is None else np.asarray(x, np.float64),
                          self.y if y is None else np.asarray(y, np.float64),
                          self.e if e is None else np.asarray(e, np.float64), self.det_off, self.poly_off)

    # -- segment reductions over detections ----------------------------------------------------
    def sum(self, values: np.ndarray) -> np.ndarray:
        """Per-detection sum (0 for an empty detection); sequential, so deterministic."""
        return np.bincount(self.row, weights=values, minlength=self.n).astype(np.float64, copy=False)

    def reduce(self, ufunc: np.ufunc, values: np.ndarray, empty: float = 0.0) -> np.ndarray:
        """Per-detection ``ufunc.reduce`` (e.g. np.maximum) over ``values`` laid out like the points."""
        out = np.full(self.n, empty, dtype=np.float64)
        nonempty = self.count > 0
        if nonempty.any():
            out[nonempty] = ufunc.reduceat(values, self.start[nonempty])
        return out

    def first_argmax(self, values: np.ndarray) -> np.ndarray:
        """Point index of each detection's first largest value (-1 for a detection without points)."""
        out = np.full(self.n, -1, dtype=np.int64)
        nonempty = self.count > 0
        if not nonempty.any():
            return out
        top = self.reduce(np.maximum, values, empty=-np.inf)
        idx = np.arange(values.size)
        cand = np.where(values == top[self.row], idx, values.size)
        first = np.minimum.reduceat(cand, self.start[nonempty])
        # all-NaN runs have no candidate: take their first point
        out[nonempty] = np.where(first < values.size, first, self.start[nonempty])
        return out

    def order_within(self, key: np.ndarray, descending: bool = False) -> np.ndarray:
        """Permutation sorting every detection's run by ``key`` (stable: equal keys keep their
        order) while runs keep their place: what ``np.lexsort((key, row))`` gives."""
        df = pl.DataFrame({"r": self.row, "k": key})
        return df.select(pl.arg_sort_by(["r", "k"], descending=[False, descending], maintain_order=True)
                         ).to_series().to_numpy()

    @cached_property
    def seam_x(self) -> np.ndarray:
        """x of every point unwrapped across the seam, per detection (:func:`unwrap`)."""
        return unwrap(self.x, self.start, self.count)


CANVAS_WIDTH = 360.0
#: a gap between a detection's sorted x values wider than this is where it crosses the seam
SEAM_GAP = 180.0


def unwrap(x: np.ndarray, start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """x of segments (``start[i]``, ``count[i]`` points each, laid out in order) moved across the
    seam by the seam rule: where a segment's widest gap between sorted neighbours exceeds 180
    degrees, every x at or left of it gets +360 (x is taken as given, as the official renderer
    does: 360 and 0 are 360 apart until the rule joins them). Only segments spanning more than 180
    degrees can have such a gap, so only their points are sorted."""
    out = np.array(x, np.float64)
    n = len(count)
    nonempty = count > 0
    if not nonempty.any():
        return out
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    lo[nonempty] = np.minimum.reduceat(out, start[nonempty])
    hi[nonempty] = np.maximum.reduceat(out, start[nonempty])
    maybe = np.flatnonzero(nonempty & (hi - lo > SEAM_GAP))
    if maybe.size == 0:
        return out
    cnt = count[maybe]
    pos = np.repeat(start[maybe], cnt) + ragged_arange(cnt)
    seg = segment_ids(cnt)
    xs = out[pos]
    order = np.lexsort((xs, seg))
    xs_sorted = xs[order]
    gaps = np.full(xs.size, -np.inf)
    same = seg[1:] == seg[:-1]  # segments stay in place under the sort
    gaps[:-1] = np.where(same, np.diff(xs_sorted), -np.inf)
    first = offsets_of(cnt)[:-1]
    widest = np.maximum.reduceat(gaps, first)
    crossing = widest > SEAM_GAP
    at_gap = crossing[seg] & (gaps == widest[seg])  # unique: two gaps cannot both exceed 180
    threshold = np.full(maybe.size, -np.inf)
    threshold[seg[at_gap]] = xs_sorted[at_gap]
    out[pos] = np.where(xs <= threshold[seg], xs + CANVAS_WIDTH, xs)
    return out


EMPTY = FlatPoints(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(1, np.int64), np.zeros(1, np.int64))


# ----------------------------------------------------------------------------------------------
# points column <-> FlatPoints
def flatten(points: pl.Series) -> FlatPoints:
    """Flat arrays of a ``points`` column (list of polygons of struct{x, y, e}); nulls are empty."""
    arr = points.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if len(arr) == 0:
        return EMPTY
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar([], arr.type))
    # Offsets are absolute into ``.values`` (which ignores slicing), so a slice is handled too.
    outer = np.asarray(arr.offsets, dtype=np.int64)
    polys = arr.values
    inner = np.asarray(polys.offsets, dtype=np.int64)[outer[0]: outer[-1] + 1]
    lo, hi = int(inner[0]), int(inner[-1])
    leaf = polys.values.slice(lo, hi - lo)
    x, y, e = (np.asarray(leaf.field(c).to_numpy(zero_copy_only=False), dtype=np.float64) for c in "xye")
    return FlatPoints(x, y, e, outer - outer[0], inner - lo)


def points_arrow(fp: FlatPoints, *, large: bool = True) -> pa.Array:
    """``fp`` as an Arrow list (one per detection) of lists (one per polygon) of struct{x, y, e}
    (float64); ``large=False`` gives 32-bit offsets (when the sizes allow)."""
    struct = pa.StructArray.from_arrays([pa.array(np.asarray(a, np.float64)) for a in (fp.x, fp.y, fp.e)],
                                        fields=_POINT_FIELDS)
    if large or fp.n_points >= 2**31:
        inner = pa.LargeListArray.from_arrays(pa.array(fp.poly_off, pa.int64()), struct)
        return pa.LargeListArray.from_arrays(pa.array(fp.det_off, pa.int64()), inner)
    inner = pa.ListArray.from_arrays(pa.array(fp.poly_off, pa.int32()), struct)
    return pa.ListArray.from_arrays(pa.array(fp.det_off, pa.int32()), inner)


def points_column(fp: FlatPoints, name: str = "points") -> pl.Series:
    """A ``points`` column (POLYGONS) holding ``fp`` (one row per detection)."""
    return pl.Series(name, points_arrow(fp)).cast(POLYGONS)


def from_polygons(groups: list[list[np.ndarray]]) -> FlatPoints:
    """FlatPoints from, per detection, a list of (k, 3) arrays (one per polygon)."""
    polys = [np.asarray(p, np.float64).reshape(-1, 3) for g in groups for p in g]
    det_off = offsets_of(np.fromiter((len(g) for g in groups), np.int64, len(groups)))
    poly_off = offsets_of(np.fromiter((len(p) for p in polys), np.int64, len(polys)))
    xye = np.concatenate(polys) if polys else np.zeros((0, 3))
    return FlatPoints(xye[:, 0].copy(), xye[:, 1].copy(), xye[:, 2].copy(), det_off, poly_off)


def polygons_series(groups: list[list[np.ndarray]], name: str = "points") -> pl.Series:
    """A ``points`` column from, per detection, a list of (k, 3) arrays (one per polygon)."""
    return points_column(from_polygons(groups), name)


def concat(parts: list[FlatPoints]) -> FlatPoints:
    """The detections of several sets, one after the other."""
    parts = [p for p in parts if p.n] or [EMPTY]
    if len(parts) == 1:
        return parts[0]
    poly_shift = np.cumsum([0] + [p.n_polys for p in parts[:-1]])
    point_shift = np.cumsum([0] + [p.n_points for p in parts[:-1]])
    det_off = np.concatenate([[0]] + [p.det_off[1:] + s for p, s in zip(parts, poly_shift)])
    poly_off = np.concatenate([[0]] + [p.poly_off[1:] + s for p, s in zip(parts, point_shift)])
    return FlatPoints(*(np.concatenate([getattr(p, c) for p in parts]) for c in "xye"), det_off, poly_off)


def _take_or_slice(fp: FlatPoints, rows: np.ndarray) -> FlatPoints:
    """``fp.take(rows)``, a view when the rows are consecutive."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and (rows.size < 2 or (np.diff(rows) == 1).all()):
        return fp.slice(int(rows[0]), int(rows[-1]) + 1)
    return fp.take(rows)


def gather(parts: list[FlatPoints], part: np.ndarray, row: np.ndarray) -> FlatPoints:
    """Detection k is detection ``row[k]`` of ``parts[part[k]]`` (polygons kept): rows of several
    sets picked in any order, without joining the sets first."""
    part = np.asarray(part, np.int64)
    row = np.asarray(row, np.int64)
    if part.size == 0:
        return EMPTY
    which = np.unique(part)
    if which.size == 1:
        return _take_or_slice(parts[int(which[0])], row)
    order = np.argsort(part, kind="stable")
    both = concat([parts[p].take(row[part == p]) for p in which.tolist()])  # detections in ``order``
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    return both.take(inv)


def choose_rows(old: FlatPoints, new: FlatPoints, use_new: np.ndarray) -> FlatPoints:
    """Per detection, its polygons from ``new`` where ``use_new`` is true, else from ``old`` (both
    sets have the same number of detections)."""
    both = concat([old, new])
    rows = np.where(use_new, np.arange(old.n) + old.n, np.arange(old.n))
    return both.take(rows)


def round_points(fp: FlatPoints) -> FlatPoints:
    """Emitted numbers rounded (coordinates to 4, intensities to 6 decimals) and kept on the canvas."""
    # the clipping done in the rounded arrays: an emitter's output is the largest set of arrays
    # made, and every temporary of its size is memory the kernel hands over page by page
    x = np.round(fp.x, XY_DECIMALS)
    y = np.round(fp.y, XY_DECIMALS)
    for v, top in ((x, 360.0), (y, 180.0)):
        np.maximum(v, 0.0, out=v)
        np.minimum(v, top, out=v)
    return fp.with_values(x, y, np.round(fp.e, E_DECIMALS))


def points_series(parts: list[FlatPoints], name: str = "points") -> pl.Series:
    """A ``points`` column made of several sets of detections, one after the other (kept as
    chunks: nothing is copied to join them)."""
    series = [points_column(p, name) for p in parts]
    if not series:
        return points_column(EMPTY, name).head(0)
    return pl.concat(series, rechunk=False) if len(series) > 1 else series[0]


# ----------------------------------------------------------------------------------------------
# content hashes
# Odd 64-bit constants: per lane, the multipliers of x, y, e and position, then of the row's
# point count, polygon count and extra value (from the golden ratio and splitmix64's stream).
_LANES = np.array([[0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                    0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x27D4EB2F165667C5],
                   [0x94D049BB133111EB, 0xBF58476D1CE4E5B9, 0x2545F4914F6CDD1D, 0x9FB21C651E98DF25,
                    0xA0761D6478BD642F, 0xE7037ED1A0B428DB, 0x8EBC6AF09C88C6E3]], dtype=np.uint64)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, in place on a uint64 array: every input bit flips about half of the
    output bits."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def row_hashes(fp: FlatPoints, extra: np.ndarray | None = None, chunk_points: int = 1 << 16) -> np.ndarray:
    """A 128-bit content hash of each detection's points: (n, 2) uint64.

    Two detections get the same hash when their polygons hold the same points (the bytes of x, y,
    e, in the same order, in the same polygons) and their ``extra`` values (float64 per detection,
    e.g. what an emitter reads of the score) are equal. Each point's bytes and its place (polygon
    and position within the detection) are mixed into two independent 64-bit lanes, summed per
    detection (mod 2^64) and mixed with the detection's point and polygon counts -- whole arrays at
    a time, no Python per row (runs of about ``chunk_points`` points, so that the temporaries stay
    small). Not a cryptographic hash: a key for caching what a detection gives."""
    n = fp.n
    out = np.zeros((n, 2), np.uint64)
    if n == 0:
        return out
    ext = np.zeros(n) if extra is None else np.ascontiguousarray(extra, np.float64)
    cum = np.cumsum(fp.count)
    a = 0
    while a < n:
        b = max(int(np.searchsorted(cum, (cum[a - 1] if a else 0) + chunk_points, side="right")), a + 1)
        b = min(b, n)
        out[a:b] = _row_hashes(fp.slice(a, b), ext[a:b])
        a = b
    return out


def _row_hashes(fp: FlatPoints, ext: np.ndarray) -> np.ndarray:
    n = fp.n
    out = np.empty((n, 2), np.uint64)
    bits = [np.ascontiguousarray(v, np.float64).view(np.uint64) for v in (fp.x, fp.y, fp.e)]
    # place of each point: its polygon within the detection (high half), its position (low half)
    pos = ragged_arange(fp.count).astype(np.uint64)
    pos |= (fp.poly_of_point - fp.det_off[:-1][fp.row]).astype(np.uint64) << np.uint64(32)
    nonempty = fp.count > 0
    counts = fp.count.astype(np.uint64)
    polys = np.diff(fp.det_off).astype(np.uint64)
    ext = ext.view(np.uint64)
    v = np.empty(fp.n_points, np.uint64)
    t = np.empty(fp.n_points, np.uint64)
    for lane in range(2):
        c = _LANES[lane]
        np.multiply(bits[0], c[0], out=v)
        for k in (1, 2):
            np.multiply(bits[k], c[k], out=t)
            v += t
        np.multiply(pos, c[3], out=t)
        v += t
        _mix64(v)
        total = np.zeros(n, np.uint64)
        if v.size:
            total[nonempty] = np.add.reduceat(v, fp.start[nonempty])
        total += counts * c[4]
        total += polys * c[5]
        total ^= _mix64(ext * c[6])
        out[:, lane] = _mix64(total)
    return out


def peak_points(points: pl.Series) -> pl.DataFrame:
    """Peak point of each detection: the first point (in polygon, then point order) with the
    largest intensity. Columns ``x``, ``y``, ``e``, one row per input row; null where it has no
    points."""
    fp = flatten(points)
    idx = fp.first_argmax(fp.e)
    has = idx >= 0
    cols = {}
    for c in "xye":
        v = np.full(fp.n, np.nan)
        v[has] = getattr(fp, c)[idx[has]]
        cols[c] = pl.Series(c, v, pl.Float64)
    # only a detection without points is null: a NaN coordinate read from the file stays NaN
    return pl.DataFrame(cols).with_columns(
        [pl.when(pl.Series(has)).then(pl.col(c)).otherwise(None).alias(c) for c in "xye"])
