"""``dense`` and ``rowmajor``: every pixel of the energy map above a fraction of its peak, or a
regular subsample of those pixels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib.canvas.points import FlatPoints, offsets_of, ragged_arange
from calib.canvas.raster import Raster, rasterize
from calib.canvas.sphere import group_sets, seam_support_rows, wrap_sets
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.emit.cache import emitter_key
from calib.stages.emit.common import MAP_CHUNK_COST, emit_one, rewrite_points, spread_reach


@dataclass(frozen=True)
class DenseSets:
    """Per polygon of each detection, the pixels of its 1 px/degree energy map at or above ``frac``
    of the detection's peak, row-major (y, then x), x unwrapped: one set (a detection of ``sets``)
    per polygon that keeps any pixel."""

    sets: FlatPoints
    det: np.ndarray  # detection of each set
    unit: np.ndarray  # raster unit (polygon) of each set
    raster: Raster  # one map per polygon


def dense_sets(fp: FlatPoints, *, frac: float = 0.1, spread: float = 0.0) -> DenseSets:
    """The dense sets of every detection of ``fp`` (each polygon mapped on its own, as the scorer
    draws it; the threshold is ``frac`` of the largest peak over the detection's polygons)."""
    r = rasterize(fp.per_polygon(), spread=spread)
    det_peak = np.zeros(fp.n)
    np.maximum.at(det_peak, fp.det_of_poly, r.peak)
    counts, x, y, v = r.pixel_counts(frac * det_peak[fp.det_of_poly], dtype=np.float64)
    units = np.flatnonzero(counts)
    sets = FlatPoints(x, y, v, np.arange(units.size + 1, dtype=np.int64),
                      offsets_of(counts[units]))
    return DenseSets(sets, fp.det_of_poly[units], units, r)


def _wrap(ds: DenseSets, sets: FlatPoints, step, n: int) -> tuple[FlatPoints, np.ndarray]:
    """Sets back on the canvas, support points on the seam carrying each polygon's map there."""
    s_set, s_y, s_in, s_x = seam_support_rows(sets, step)
    s_e = ds.raster.sample(ds.unit[s_set], s_x, s_in)
    return group_sets(wrap_sets(sets, (s_set, s_y, s_e)), ds.det, n)


def dense_batch(fp: FlatPoints, scores=None, *, frac: float = 0.1, spread: float = 0.0):
    """Batch ``dense``: every pixel of each polygon's dense set (a set crossing the seam is split
    into two polygons, the seam column going to both)."""
    ds = dense_sets(fp, frac=frac, spread=spread)
    return _wrap(ds, ds.sets, 1.0, fp.n)


def _by_set_then_decreasing(sets: FlatPoints) -> np.ndarray | None:
    """``np.lexsort((-e, row))`` of a set of positive values ``e`` (whose bit patterns sort as the
    values do): one sort of int64 keys packing the set, the top bits of e's pattern (inverted:
    decreasing) and the position in the set (ties in the set's order), then the few runs of keys
    that tie while their values differ (below the kept bits) sorted exactly. None where the keys
    hold too few of e's bits."""
    e, row = sets.e, sets.row
    pb = max(int(sets.count.max()) - 1, 1).bit_length()
    rb = max(int(sets.n) - 1, 1).bit_length()
    eb = 63 - pb - rb  # bits of e's 63-bit pattern kept
    if eb < 24:
        return None
    key = e.view(np.int64) >> (63 - eb)
    np.subtract((1 << eb) - 1, key, out=key)
    key <<= pb
    key |= row << (eb + pb)
    key |= np.arange(e.size, dtype=np.int64) - np.repeat(sets.start, sets.count)
    key.sort()
    order = sets.start[key >> (eb + pb)] + (key & ((1 << pb) - 1))
    key >>= pb
    pair = np.flatnonzero(key[1:] == key[:-1])  # slots i, i + 1 with equal keys (few)
    if pair.size:
        bad = e[order[pair + 1]] != e[order[pair]]
        if bad.any():
            # runs of equal keys: chains of consecutive pairs, from their first pair's slot to
            # their last pair's slot + 1; those holding a bad pair are sorted exactly
            new = np.r_[True, pair[1:] != pair[:-1] + 1]
            run = np.cumsum(new) - 1  # run of each pair
            first = pair[new]
            last = pair[np.r_[np.flatnonzero(new)[1:] - 1, pair.size - 1]] + 1
            redo = np.unique(run[bad])
            size = last[redo] - first[redo] + 1
            slots = np.repeat(first[redo], size) + ragged_arange(size)
            sub = order[slots]
            order[slots] = sub[np.lexsort((sub, -e[sub], np.repeat(redo, size)))]
    return order


def subsample_by_intensity(sets: FlatPoints, step: int) -> np.ndarray:
    """Mask keeping every ``step``-th point of each set ordered by decreasing intensity (ties in
    row-major order, i.e. the set's own order), starting with its peak."""
    order = _by_set_then_decreasing(sets) if sets.n_points and (sets.e > 0).all() else None
    if order is None:
        order = sets.order_within(-sets.e)  # stable: ties keep the set's (row-major) order
    rank = np.empty(sets.n_points, np.int64)
    rank[order] = np.arange(sets.n_points) - np.repeat(sets.start, sets.count)
    return rank % step == 0


def rowmajor_batch(fp: FlatPoints, scores=None, *, step: int = 2, frac: float = 0.1, spread: float = 0.0):
    """Batch ``rowmajor``: every ``step``-th point of each polygon's dense set ordered by
    decreasing intensity (ties in row-major order), starting with its peak, kept in row-major
    order: the subsample keeps every intensity level and so the region."""
    ds = dense_sets(fp, frac=frac, spread=spread)
    keep = np.flatnonzero(subsample_by_intensity(ds.sets, step))
    sub = FlatPoints(ds.sets.x[keep], ds.sets.y[keep], ds.sets.e[keep], ds.sets.det_off,
                     offsets_of(np.bincount(ds.sets.row[keep], minlength=ds.sets.n)))
    return _wrap(ds, sub, float(step), fp.n)


def dense_points(polygons: list[np.ndarray], *, frac: float = 0.1, spread: float = 0.0) -> list[np.ndarray]:
    """:func:`dense_batch` of one detection (rounded)."""
    return emit_one(lambda fp, s: dense_batch(fp, frac=frac, spread=spread), polygons)


def rowmajor_points(polygons: list[np.ndarray], *, step: int = 2, frac: float = 0.1,
                    spread: float = 0.0) -> list[np.ndarray]:
    """:func:`rowmajor_batch` of one detection (rounded)."""
    return emit_one(lambda fp, s: rowmajor_batch(fp, step=step, frac=frac, spread=spread), polygons)


@register("dense")
class Dense(Stage):
    """Emit every pixel (1 px/degree) of each detection's energy map at or above ``frac`` of its peak.

    The most faithful export of a mask and the largest; ``spread`` (degrees) grows sparse detections
    into a region first (each pixel off the points takes the nearest point's energy times a Gaussian
    fall-off)."""

    needs_columns = ("points",)

    PARAMS = declare(
        frac=Param(float, 0.1, "emit the pixels at or above this share of the detection's peak",
                   unit="fraction of the peak", ge=0, le=1),
        spread=Param(float, 0.0, "grow sparse detections into a region first (Gaussian fall-off from the nearest "
                     "point; 0: none)", unit="degrees", ge=0),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        params = dict(frac=float(self.frac), spread=float(self.spread))
        df = rewrite_points(tables["detections"], lambda fp, s: dense_batch(fp, **params),
                            grow=3.0 * spread_reach(self.spread), emitter=emitter_key("dense", params),
                            max_cost=MAP_CHUNK_COST)
        return tables.replace(detections=df)


@register("rowmajor")
class RowMajor(Stage):
    """Emit every ``step``-th pixel of the dense set, in order of decreasing intensity.

    The dense set is the pixels >= ``frac`` of the peak, taken in order of decreasing intensity, row-major among equals: about 1/step of the dense size, same region."""

    needs_columns = ("points",)

    PARAMS = declare(
        step=Param(int, 2, "emit every step-th pixel of the dense set (about 1/step of its size)", unit="pixels",
                   ge=1),
        frac=Param(float, 0.1, "the dense set: pixels at or above this share of the detection's peak",
                   unit="fraction of the peak", ge=0, le=1),
        spread=Param(float, 0.0, "grow sparse detections into a region first (Gaussian fall-off from the nearest "
                     "point; 0: none)", unit="degrees", ge=0),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        params = dict(step=int(self.step), frac=float(self.frac), spread=float(self.spread))
        df = rewrite_points(tables["detections"], lambda fp, s: rowmajor_batch(fp, **params),
                            grow=3.0 * spread_reach(self.spread), emitter=emitter_key("rowmajor", params),
                            max_cost=MAP_CHUNK_COST)
        return tables.replace(detections=df)
