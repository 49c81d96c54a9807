"""``compress``: the dense set thinned to the strongest pixel per G x G cell, with its outline kept."""
from __future__ import annotations

import numpy as np

from calib.canvas.hull import convex_hulls
from calib.canvas.points import FlatPoints, offsets_of
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.emit.cache import emitter_key
from calib.stages.emit.common import MAP_CHUNK_COST, emit_one, rewrite_points, spread_reach
from calib.stages.emit.dense import _wrap, dense_sets


_UNKNOWN = object()  # an argument the function works out itself


def _row_major(sets: FlatPoints) -> np.ndarray | None:
    """None when every set's points are already in row-major order (y, then x), else the order."""
    r, y, x = sets.row, sets.y, sets.x
    if sets.n_points < 2:
        return None
    same = r[1:] == r[:-1]
    ok = ~same | (y[1:] > y[:-1]) | ((y[1:] == y[:-1]) & (x[1:] >= x[:-1]))
    return None if ok.all() else np.lexsort((x, y, r))


def outline_points(sets: FlatPoints, order=_UNKNOWN) -> np.ndarray:
    """Mask of the points spanning each set's convex hull (its vertices; for a flat set, the
    extreme points along x and y: the first lowest x, highest x, lowest y, highest y). Only each
    row's two ends can be vertices, so only they are candidates. ``order``: :func:`_row_major` of
    ``sets`` where the caller has it."""
    row = sets.row
    order = _row_major(sets) if order is _UNKNOWN else order
    ys, rs = (sets.y, row) if order is None else (sets.y[order], row[order])
    new = np.r_[True, (ys[1:] != ys[:-1]) | (rs[1:] != rs[:-1])]
    ends = new | np.r_[new[1:], True]  # a row's first and last points
    cand = np.flatnonzero(ends) if order is None else np.sort(order[ends])
    off, verts, flat = convex_hulls(row[cand], sets.x[cand], sets.y[cand], sets.n)
    out = np.zeros(sets.n_points, bool)
    out[cand[verts]] = True
    f = flat & (sets.count > 0)
    if f.any():
        sub, pos = sets.select(f)
        for values, pick in ((sub.x, np.minimum), (sub.x, np.maximum), (sub.y, np.minimum), (sub.y, np.maximum)):
            best = sub.reduce(pick, values)
            hit = np.flatnonzero(values == best[sub.row])
            first = np.full(sub.n, np.iinfo(np.int64).max)
            np.minimum.at(first, sub.row[hit], hit)
            out[pos[first]] = True
    return out


def thin_to_cells(sets: FlatPoints, cell: np.ndarray, order=_UNKNOWN) -> np.ndarray:
    """Mask of the strongest point in each ``cell[set]`` x ``cell[set]`` block of each set
    (anchored at the set's lowest x and y; ties go to the first in row-major order). ``order``:
    :func:`_row_major` of ``sets`` where the caller has it."""
    cnt = sets.count

    def per_point(v):  # a value per set, repeated over its points (its run)
        return np.repeat(v, cnt)

    g = per_point(np.asarray(cell, np.float64))

    def cell_index(v):  # floor((v - the set's lowest v) / g), as float (whole numbers), in place
        d = per_point(sets.reduce(np.minimum, v))
        np.subtract(v, d, out=d)
        d /= g
        return np.floor(d, out=d)

    cxf, cyf = cell_index(sets.x), cell_index(sets.y)
    ncx = sets.reduce(np.maximum, cxf, empty=-1).astype(np.int64) + 1
    ncy = sets.reduce(np.maximum, cyf, empty=-1).astype(np.int64) + 1
    goff = np.concatenate([[0], np.cumsum(ncx * ncy)])
    cell_id = per_point(ncx)
    cell_id *= cyf.astype(np.int64)
    cell_id += cxf.astype(np.int64)
    cell_id += per_point(goff[:-1])
    best = np.full(int(goff[-1]), -np.inf)
    np.maximum.at(best, cell_id, sets.e)
    # the first in row-major order among a cell's strongest points
    order = _row_major(sets) if order is _UNKNOWN else order
    top = np.flatnonzero(sets.e == best[cell_id])
    rank = top  # each point's place in row-major order: its own, unless the sets need sorting
    if order is not None:
        rank = np.empty(sets.n_points, np.int64)
        rank[order] = np.arange(sets.n_points)
        rank = rank[top]
    first = np.full(best.size, np.iinfo(np.int64).max)
    np.minimum.at(first, cell_id[top], rank)
    out = np.zeros(sets.n_points, bool)
    winners = first[first < np.iinfo(np.int64).max]
    out[winners if order is None else order[winners]] = True
    return out


def cell_sizes(scores, cell: int, cell_high: int, high_score: float) -> np.ndarray:
    """The cell size G of each detection: ``cell_high`` when its score is >= ``high_score``, else
    ``cell``."""
    return np.where(np.asarray(scores, np.float64) >= high_score, int(cell_high), int(cell))


def compress_batch(fp: FlatPoints, scores: np.ndarray, *, frac: float = 0.1, cell: int = 5, cell_high: int = 4,
                   high_score: float = 0.5, spread: float = 0.0):
    """Batch ``compress``, polygon by polygon (as the scorer draws them): the energy map's pixels at
    or above ``frac`` of the peak, thinned to the strongest pixel of each G x G cell (G =
    ``cell_high`` when ``score >= high_score``, else ``cell``), plus the set's outline (convex-hull
    vertices) so the interpolated mask covers the same region and does not shrink. A set crossing
    the seam gets support points on the seam every G degrees so both halves reach it."""
    ds = dense_sets(fp, frac=frac, spread=spread)
    g = cell_sizes(scores, cell, cell_high, high_score)[ds.det]
    sets = ds.sets
    keep = np.ones(sets.n_points, bool)
    thin = g > 1
    if thin.any():
        order = _row_major(sets)
        keep = ~thin[sets.row] | thin_to_cells(sets, np.maximum(g, 1), order) | outline_points(sets, order)
    sub = FlatPoints(sets.x[keep], sets.y[keep], sets.e[keep], sets.det_off,
                     offsets_of(np.bincount(sets.row[keep], minlength=sets.n)))
    return _wrap(ds, sub, np.maximum(g, 1).astype(np.float64), fp.n)


def compress_points(polygons: list[np.ndarray], score: float = 0.0, *, frac: float = 0.1, cell: int = 5,
                    cell_high: int = 4, high_score: float = 0.5, spread: float = 0.0) -> list[np.ndarray]:
    """:func:`compress_batch` of one detection (rounded)."""
    return emit_one(lambda fp, s: compress_batch(fp, s, frac=frac, cell=cell, cell_high=cell_high,
                                                 high_score=high_score, spread=spread), polygons, score)


@register("compress")
class Compress(Stage):
    """Emit a compressed dense mask: the strongest pixel per G x G cell plus the mask's outline.

    Drops pixels below ``frac`` of the peak, keeps the strongest pixel in each G x G cell (G = ``cell``, or the finer ``cell_high`` for detections scoring >= ``high_score``,
    which matter most to AP) plus the outline points, so the rendered mask keeps its extent at a
    fraction of the dense size."""

    needs_columns = ("points", "score")

    PARAMS = declare(
        frac=Param(float, 0.1, "drop pixels below this share of the detection's peak", unit="fraction of the peak",
                   ge=0, le=1),
        cell=Param(int, 5, "keep the strongest pixel per cell x cell block", unit="pixels (1 px = 1 degree)", ge=1),
        cell_high=Param(int, 4, "the finer cell of detections scoring >= high_score (they matter most to AP)",
                        unit="pixels (1 px = 1 degree)", ge=1),
        high_score=Param(float, 0.5, "score from which a detection gets the finer cell_high", unit="score"),
        spread=Param(float, 0.0, "grow sparse detections into a region first (Gaussian fall-off from the nearest "
                     "point; 0: none)", unit="degrees", ge=0),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        params = dict(frac=float(self.frac), cell=int(self.cell), cell_high=int(self.cell_high),
                      high_score=float(self.high_score), spread=float(self.spread))
        df = tables["detections"]
        # what a detection gives depends on its score only through its cell size: that is the key
        cells = cell_sizes(df.get_column("score").to_numpy(), params["cell"], params["cell_high"],
                           params["high_score"]) if len(df) else None
        key = emitter_key("compress", dict(frac=params["frac"], spread=params["spread"]))
        df = rewrite_points(df, lambda fp, s: compress_batch(fp, s, **params), grow=3.0 * spread_reach(self.spread),
                            emitter=key, key_extra=cells, max_cost=MAP_CHUNK_COST)
        return tables.replace(detections=df)
