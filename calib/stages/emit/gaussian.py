"""``gaussian``: a direction (azimuth, elevation) rendered as a spherical-Gaussian blob, for
direction-only systems (SELD outputs, or detections reduced to their peak)."""
from __future__ import annotations

import math

import numpy as np
import polars as pl

from calib.io.seld import from_canvas, to_canvas
from calib.render import flatten, polygons_series, round_points, seam_split
from calib.stages.base import Stage, Tables, register
from calib.stages.emit.common import check_fraction, check_positive
from calib.tables import DETECTIONS, conform


def great_circle_deg(az0, el0, az1, el1) -> np.ndarray:
    """Angle in degrees between directions (degrees), by the haversine formula."""
    az0, el0, az1, el1 = (np.radians(np.asarray(v, np.float64)) for v in (az0, el0, az1, el1))
    h = np.sin((el1 - el0) / 2) ** 2 + np.cos(el0) * np.cos(el1) * np.sin((az1 - az0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def _check(sigma_deg: float, threshold: float, scale: float, step: float) -> None:
    check_positive("gaussian: sigma", sigma_deg)
    check_positive("gaussian: scale", scale)
    check_positive("gaussian: step", step)
    check_fraction("gaussian: threshold", threshold, low_open=True)


def gaussian_points(azimuth: float, elevation: float, sigma_deg: float = 8.0, threshold: float = 0.25,
                    scale: float = 1.3, *, step: float = 2.0) -> list[np.ndarray]:
    """Polygons (arrays of x, y, e) of a spherical-Gaussian blob around a direction.

    Intensity exp(-d^2 / (2 (scale sigma_deg)^2)) with d the great-circle angle to the direction,
    kept where it is >= ``threshold``: the lattice points every ``step`` degrees (aligned to the
    canvas; the official renderer's pixels are 3.6 degrees wide, so 2 loses nothing it can see and
    is 4 times smaller than 1) plus the direction itself (intensity 1). A blob over the seam is cut into two polygons
    meeting on it; a blob over a pole spans every x near that pole."""
    _check(sigma_deg, threshold, scale, step)
    s = sigma_deg * scale
    radius = s * math.sqrt(-2.0 * math.log(threshold))  # where the intensity falls to the threshold
    xc, yc = (float(v) for v in to_canvas(azimuth, elevation))
    y_lo = max(0.0, math.ceil((yc - radius - step) / step) * step)
    y_hi = min(180.0, yc + radius + step)
    ys = np.arange(y_lo, y_hi + 1e-9, step)
    xs = np.arange(math.ceil((xc - 180.0) / step) * step, xc + 180.0 + 1e-9, step)  # one turn, unwrapped
    gx, gy = np.meshgrid(xs, ys)
    gx, gy = gx.ravel(), gy.ravel()
    az, el = from_canvas(np.mod(gx, 360.0), gy)
    az0, el0 = from_canvas(xc, yc)
    e = np.exp(-great_circle_deg(az0, el0, az, el) ** 2 / (2.0 * s * s))
    keep = e >= threshold
    pts = np.column_stack([gx[keep], gy[keep], e[keep]])
    if not np.any((pts[:, 0] == xc) & (pts[:, 1] == yc)):
        pts = np.concatenate([pts, [[xc, yc, 1.0]]])
    pts = pts[np.lexsort((pts[:, 0], pts[:, 1]))]
    return [round_points(p) for p in seam_split(pts[:, 0], pts[:, 1], pts[:, 2], support_step=step)]


def peak_directions(points: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(azimuth, elevation, has_points) of each detection's peak point (the first with the largest
    intensity)."""
    fp = flatten(points)
    n = len(fp)
    az = np.full(n, np.nan)
    el = np.full(n, np.nan)
    has = fp.n_points() > 0
    if fp.xye.size:
        det = fp.detection_of_point()
        order = np.lexsort((np.arange(len(det)), -fp.xye[:, 2], det))
        first = np.r_[True, det[order][1:] != det[order][:-1]]
        idx = order[first]
        a, e = from_canvas(fp.xye[idx, 0], fp.xye[idx, 1])
        az[det[idx]], el[det[idx]] = a, e
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

    def __init__(self, *, sigma: float = 8.0, threshold: float = 0.25, scale: float = 1.3, step: float = 2.0,
                 source: str = "detections", system: str = "teacher", score: float = 1.0):
        self.sigma = sigma
        self.threshold = threshold
        self.scale = scale
        self.step = step
        self.source = source
        self.system = system
        self.score = score

    def _blob(self, az: float, el: float) -> list[np.ndarray]:
        return gaussian_points(az, el, self.sigma, self.threshold, self.scale, step=self.step)

    def apply(self, tables: Tables) -> Tables:
        _check(self.sigma, self.threshold, self.scale, self.step)
        if self.source == "teacher":
            return tables.replace(detections=self._from_teacher(tables["teacher"]))
        if self.source != "detections":
            raise ValueError(f"gaussian: source must be 'detections' or 'teacher', got {self.source!r}")
        df = tables["detections"]
        az, el, has = peak_directions(df.get_column("points"))
        blobs = [self._blob(az[i], el[i]) if has[i] else [] for i in range(len(df))]
        keep_old = flatten(df.get_column("points"))
        groups = [b if b else keep_old.polygons(i) for i, b in enumerate(blobs)]
        return tables.replace(detections=df.with_columns(polygons_series(groups)) if len(df) else df)

    def _from_teacher(self, teacher: pl.DataFrame) -> pl.DataFrame:
        t = teacher.sort(["clip", "frame", "class_id", "track", "azimuth", "elevation"], nulls_last=True,
                         maintain_order=True)
        blobs = [self._blob(a, e) for a, e in zip(t.get_column("azimuth").to_list(), t.get_column("elevation").to_list())]
        out = t.select(
            pl.lit(self.system, pl.String).alias("system"),
            "clip", "frame",
            pl.int_range(pl.len(), dtype=pl.Int64).over("clip").alias("det_id"),
            "class_id",
            pl.lit(float(self.score), pl.Float64).alias("score"),
            pl.col("distance"),
            pl.col("track").alias("instance_id"),
        ).with_columns(polygons_series(blobs), pl.lit(None, pl.String).alias("extra"))
        return conform(out.select(list(DETECTIONS)), "detections", where="gaussian(source=teacher)")
