"""``gaussian``: a direction (azimuth, elevation) rendered as a spherical-Gaussian blob, for
direction-only systems (SELD outputs, or detections reduced to their peak)."""
from __future__ import annotations

import math

import numpy as np
import polars as pl

from calib.canvas.points import (FlatPoints, flatten, offsets_of, points_column, points_series, ragged_arange,
                                 round_points, row_hashes)
from calib.canvas.sphere import from_canvas, great_circle_haversine, group_sets, seam_support_rows, to_canvas, wrap_sets
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.params import ParamError, problems
from calib.stages.emit.common import emit_cached
from calib.stages.emit.cache import emitter_key
from calib.tables import DETECTIONS, conform

#: work per chunk of detections (their points + 100 each): a blob tests some 600 lattice points,
#: so chunks of a few hundred detections keep its arrays small (measured: 2x faster than 300_000;
#: since the blob's column terms are shared, 30_000-45_000 beat 15_000 by 15-25%)
BLOB_CHUNK = 30_000
#: kept for callers of the old name: the haversine angle between directions
great_circle_deg = great_circle_haversine


def _check(sigma_deg: float, threshold: float, scale: float, step: float) -> None:
    """The blob parameters checked against the stage's declarations (:class:`Gaussian`'s ``PARAMS``)."""
    found = problems(Gaussian.PARAMS, {"sigma": sigma_deg, "threshold": threshold, "scale": scale, "step": step})
    if found:
        raise ParamError("gaussian", *found[0])


def gaussian_blobs(azimuth, elevation, sigma_deg: float = 8.0, threshold: float = 0.25, scale: float = 1.3, *,
                   step: float = 2.0) -> FlatPoints:
    """Polygons of a spherical-Gaussian blob around each direction (one detection each, rounded).

    Intensity exp(-d^2 / (2 (scale sigma_deg)^2)) with d the great-circle angle to the direction,
    kept where it is >= ``threshold``: the lattice points every ``step`` degrees (aligned to the
    canvas; the official renderer's pixels are 3.6 degrees wide, so 2 loses nothing it can see and
    is 4 times smaller than 1) plus the direction itself (intensity 1). A blob over the seam is cut
    into two polygons meeting on it (support points on the seam carry the Gaussian there); a blob
    over a pole spans every x near that pole. Each row's kept columns form one interval around the
    direction (the angle grows with the azimuth difference), found in closed form, so only a margin
    of candidates around it is tested."""
    _check(sigma_deg, threshold, scale, step)
    az = np.asarray(azimuth, np.float64).ravel()
    el = np.asarray(elevation, np.float64).ravel()
    # a blob depends on its direction only: each distinct one is drawn once
    pairs, inverse = np.unique(np.column_stack([az, el]), axis=0, return_inverse=True)
    if len(pairs) < az.size:
        return _blobs(pairs[:, 0], pairs[:, 1], sigma_deg, threshold, scale, step).take(inverse.ravel())
    return _blobs(az, el, sigma_deg, threshold, scale, step)


def _h_reach(radius: float) -> float:
    """A bound on the haversine term h = sin^2(d / 2) of every angle d (degrees) up to ``radius``
    and a hair: those beyond it are farther than (1 + 1e-6) radius."""
    half = min(math.radians(radius) * (1.0 + 1e-6), math.pi) / 2.0
    return math.sin(half) ** 2 + 1e-12


def _blobs(az: np.ndarray, el: np.ndarray, sigma_deg: float, threshold: float, scale: float,
           step: float) -> FlatPoints:
    m = az.size
    s = sigma_deg * scale
    radius = s * math.sqrt(-2.0 * math.log(threshold))  # where the intensity falls to the threshold
    xc, yc = (np.asarray(v, np.float64).ravel() for v in to_canvas(az, el))
    az0, el0 = from_canvas(xc, yc)
    y_lo = np.maximum(0.0, np.ceil((yc - radius - step) / step) * step)
    y_hi = np.minimum(180.0, yc + radius + step)
    ny = np.maximum(np.ceil((y_hi + 1e-9 - y_lo) / step), 0).astype(np.int64)
    x_start = np.ceil((xc - 180.0) / step) * step  # one turn, unwrapped
    nx = np.maximum(np.ceil((xc + 180.0 + 1e-9 - x_start) / step), 0).astype(np.int64)
    # rows, and on each row the interval of columns that can pass the threshold (plus a margin)
    rb = np.repeat(np.arange(m), ny)
    gy = y_lo[rb] + ragged_arange(ny) * step
    _, row_el = from_canvas(np.zeros_like(gy), gy)
    e0, e1 = np.radians(el0[rb]), np.radians(row_el)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = (math.cos(math.radians(radius)) - np.sin(e0) * np.sin(e1)) / (np.cos(e0) * np.cos(e1))
    half = np.degrees(np.arccos(np.clip(np.nan_to_num(q, nan=-2.0), -1.0, 1.0)))
    half = np.where(q > 1.0, -1.0, half)  # the row misses the blob
    lo_i = np.clip(np.floor((xc[rb] - half - step - x_start[rb]) / step), 0, None).astype(np.int64)
    hi_i = np.minimum(np.ceil((xc[rb] + half + step - x_start[rb]) / step), nx[rb] - 1).astype(np.int64)
    cnt = np.where(half >= 0, np.maximum(hi_i - lo_i + 1, 0), 0)
    cb = np.repeat(np.arange(rb.size), cnt)
    # each blob's columns (from its rows' lowest to their highest), then every candidate point as
    # (row, column): its x and its azimuth term are its column's
    has = cnt > 0
    c_lo = np.full(m, np.iinfo(np.int64).max)
    c_hi = np.full(m, -1)
    np.minimum.at(c_lo, rb[has], lo_i[has])
    np.maximum.at(c_hi, rb[has], hi_i[has])
    ncol = np.where(c_hi >= c_lo, c_hi - c_lo + 1, 0)
    col_b = np.repeat(np.arange(m), ncol)
    col_x = x_start[col_b] + (c_lo[col_b] + ragged_arange(ncol)) * step
    col_az, _ = from_canvas(np.mod(col_x, 360.0), np.zeros(col_x.size))
    col = np.repeat(offsets_of(ncol)[:-1][rb] + lo_i - c_lo[rb], cnt) + ragged_arange(cnt)
    # great_circle_haversine(az0[b], el0[b], p_az, p_el), its terms of the elevations once per row
    # and of the azimuths once per column (the same arithmetic)
    row_sin2 = np.sin((e1 - e0) / 2) ** 2
    row_cos = np.cos(e0) * np.cos(e1)
    col_sin2 = np.sin((np.radians(col_az) - np.radians(az0)[col_b]) / 2) ** 2
    h = row_sin2[cb] + row_cos[cb] * col_sin2[col]
    # the angle (and the intensity) only where it can pass the threshold: h grows with the angle,
    # and past (1 + 1e-6) radius the intensity is below the threshold by far more than rounding
    near = np.flatnonzero(h <= _h_reach(radius))
    d = np.degrees(2 * np.arcsin(np.sqrt(np.clip(h[near], 0.0, 1.0))))
    e = np.exp(-d ** 2 / (2.0 * s * s))
    keep = e >= threshold
    at = near[keep]
    b, gx, gyy, e = rb[cb[at]], col_x[col[at]], gy[cb[at]], e[keep]
    # the direction itself, when no lattice point is on it
    on_centre = np.zeros(m, bool)
    hit = (gx == xc[b]) & (gyy == yc[b])
    on_centre[b[hit]] = True
    add = np.flatnonzero(~on_centre)
    if np.isfinite(xc).all() and np.isfinite(yc).all():
        # the lattice points are row-major per blob already: each direction goes in after the points
        # of its blob before it in row-major order (no point equals it)
        before = (gyy < yc[b]) | ((gyy == yc[b]) & (gx < xc[b]))
        n_before = np.bincount(b, weights=before, minlength=m).astype(np.int64)
        start = offsets_of(np.bincount(b, minlength=m))[:-1]
        added = np.zeros(m, np.int64)
        added[add] = 1
        shift = np.cumsum(added) - added  # directions inserted in the blobs before
        pos = np.arange(b.size) + shift[b] + (added[b] & ~before)
        at = start[add] + n_before[add] + shift[add]
        total = b.size + add.size
        bb, gx2, gy2, e2 = np.empty(total, np.int64), np.empty(total), np.empty(total), np.empty(total)
        bb[pos], gx2[pos], gy2[pos], e2[pos] = b, gx, gyy, e
        bb[at], gx2[at], gy2[at], e2[at] = add, xc[add], yc[add], 1.0
        b, gx, gyy, e = bb, gx2, gy2, e2
    else:
        b = np.concatenate([b, add])
        gx = np.concatenate([gx, xc[add]])
        gyy = np.concatenate([gyy, yc[add]])
        e = np.concatenate([e, np.ones(add.size)])
        o = np.lexsort((gx, gyy, b))  # row-major per blob
        b, gx, gyy, e = b[o], gx[o], gyy[o], e[o]
    sets = FlatPoints(gx, gyy, e, np.arange(m + 1, dtype=np.int64), offsets_of(np.bincount(b, minlength=m)))
    s_set, s_y, s_in, s_x = seam_support_rows(sets, step)
    s_az, s_el = from_canvas(np.mod(s_x, 360.0), s_in)
    s_e = np.exp(-great_circle_haversine(az0[s_set], el0[s_set], s_az, s_el) ** 2 / (2.0 * s * s))
    out, _ = group_sets(wrap_sets(sets, (s_set, s_y, s_e)), np.arange(m), m)
    return round_points(out)


def gaussian_points(azimuth: float, elevation: float, sigma_deg: float = 8.0, threshold: float = 0.25,
                    scale: float = 1.3, *, step: float = 2.0) -> list[np.ndarray]:
    """:func:`gaussian_blobs` of one direction: its polygons (arrays of x, y, e)."""
    return gaussian_blobs([azimuth], [elevation], sigma_deg, threshold, scale, step=step).polygons(0)


def peak_directions(points: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(azimuth, elevation, has_points) of each detection's peak point (the first with the largest
    intensity)."""
    fp = flatten(points)
    idx = fp.first_argmax(fp.e)
    has = idx >= 0
    az = np.full(fp.n, np.nan)
    el = np.full(fp.n, np.nan)
    a, e = from_canvas(fp.x[idx[has]], fp.y[idx[has]])
    az[has], el[has] = a, e
    return az, el, has


@register("gaussian")
class Gaussian(Stage):
    """Emit each direction (azimuth, elevation) as a spherical-Gaussian blob, for direction-only systems.

    The blob has width ``scale`` x ``sigma`` degrees and is cut at ``threshold`` of its peak; defaults threshold 0.25 and scale 1.3 from the SELD-to-image report).

    ``source="detections"``: each detection's peak point is its direction (a table holding one point
    per detection, or any other: the peak wins). ``source="teacher"``: the ``teacher`` table's
    (azimuth, elevation) rows become the detections (system ``system``, score ``score``, instance id
    = track), replacing any ``detections`` table."""

    needs_tables = ("detections",)
    needs_columns = ("points",)

    PARAMS = declare(
        sigma=Param(float, 8.0, "width of the spherical Gaussian (times scale)", unit="degrees", gt=0),
        threshold=Param(float, 0.25, "cut the blob where it falls below this share of its peak",
                        unit="fraction of the peak", gt=0, le=1),
        scale=Param(float, 1.3, "factor on sigma (the SELD-to-image report's 1.3)", unit="factor", gt=0),
        step=Param(float, 2.0, "lattice spacing of the blob's points (the official renderer's pixels are 3.6 "
                   "degrees wide)", unit="degrees", gt=0),
        source=Param(str, "detections", "where the directions come from: each detection's peak point, or the "
                     "teacher table's rows (which then replace the detections)", choices=("detections", "teacher")),
        system=Param(str, "teacher", "system name of the detections made from the teacher (source = 'teacher')"),
        score=Param(float, 1.0, "score of the detections made from the teacher (source = 'teacher')", unit="score"),
    )

    def _blobs(self, az, el) -> FlatPoints:
        return gaussian_blobs(az, el, self.sigma, self.threshold, self.scale, step=self.step)

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        if self.source == "teacher":
            return tables.replace(detections=self._from_teacher(tables["teacher"]))
        df = tables["detections"]
        if len(df) == 0:
            return tables
        fp = flatten(df.get_column("points"))

        def emit(sub: FlatPoints, scores):
            idx = sub.first_argmax(sub.e)
            has = idx >= 0
            a, e = from_canvas(sub.x[np.maximum(idx, 0)], sub.y[np.maximum(idx, 0)])
            return self._blobs(a, e), has

        key = emitter_key("gaussian", dict(sigma=float(self.sigma), threshold=float(self.threshold),
                                           scale=float(self.scale), step=float(self.step)))
        # a blob depends on the detection's peak only: detections sharing it share the blob
        idx = fp.first_argmax(fp.e)
        at = np.maximum(idx, 0)
        one = np.arange(fp.n + 1, dtype=np.int64)
        peaks = FlatPoints(fp.x[at], fp.y[at], np.zeros(fp.n), one, one)
        out = emit_cached(fp, np.zeros(fp.n), emit, key, keys=row_hashes(peaks), grow=None, max_cost=BLOB_CHUNK)
        return tables.replace(detections=df.with_columns(points_series(out)))

    def _from_teacher(self, teacher: pl.DataFrame) -> pl.DataFrame:
        t = teacher.sort(["clip", "frame", "class_id", "track", "azimuth", "elevation"], nulls_last=True,
                         maintain_order=True)
        blobs = self._blobs(t.get_column("azimuth").to_numpy(), t.get_column("elevation").to_numpy())
        out = t.select(
            pl.lit(self.system, pl.String).alias("system"),
            "clip", "frame",
            pl.int_range(pl.len(), dtype=pl.Int64).over("clip").alias("det_id"),
            "class_id",
            pl.lit(float(self.score), pl.Float64).alias("score"),
            pl.col("distance"),
            pl.col("track").alias("instance_id"),
        ).with_columns(points_column(blobs), pl.lit(None, pl.String).alias("extra"))
        return conform(out.select(list(DETECTIONS)), "detections", where="gaussian(source=teacher)")
