"""``dense`` and ``rowmajor``: every pixel of the energy map above a fraction of its peak, or a
regular subsample of those pixels."""
from __future__ import annotations

import numpy as np

from calib.render import polygon_maps, seam_split
from calib.stages.base import Stage, Tables, register
from calib.stages.emit.common import check_fraction, check_positive, rewrite_points


def dense_sets(polygons: list[np.ndarray], *, frac: float = 0.1, spread: float = 0.0) -> list[np.ndarray]:
    """Per polygon of the detection, a (k, 3) array x (unwrapped), y, e of the pixels of its
    1 px/degree energy map at or above ``frac`` of the detection's peak, row-major (y, then x).
    Polygons left without pixels are omitted."""
    maps = [m for m in polygon_maps(polygons, spread=spread) if not m.empty]
    if not maps:
        return []
    peak = max(m.peak for m in maps)
    sets = [m.pixels(frac * peak) for m in maps]
    return [d for d in sets if len(d)]


def dense_points(polygons: list[np.ndarray], *, frac: float = 0.1, spread: float = 0.0) -> list[np.ndarray]:
    """Every pixel of the energy map at or above ``frac`` of its peak, polygon by polygon (a polygon
    crossing the seam is split into two, the seam column going to both)."""
    out = []
    for d in dense_sets(polygons, frac=frac, spread=spread):
        out += seam_split(d[:, 0], d[:, 1], d[:, 2], support_step=1.0)
    return out


def rowmajor_points(polygons: list[np.ndarray], *, step: int = 2, frac: float = 0.1,
                    spread: float = 0.0) -> list[np.ndarray]:
    """Every ``step``-th point of each polygon's dense set ordered by decreasing intensity (ties in
    row-major order), starting with its peak: the subsample keeps every intensity level and so the
    region."""
    out = []
    for d in dense_sets(polygons, frac=frac, spread=spread):
        order = np.lexsort((d[:, 0], d[:, 1], -d[:, 2]))
        keep = d[order[::step]]
        keep = keep[np.lexsort((keep[:, 0], keep[:, 1]))]
        out += seam_split(keep[:, 0], keep[:, 1], keep[:, 2], support_step=float(step))
    return out


@register("dense")
class Dense(Stage):
    """Emit every pixel (1 px/degree) of each detection's energy map at or above ``frac`` of its peak.

    The most faithful export of a mask and the largest; ``spread`` (degrees) grows sparse detections
    into a region first (each pixel off the points takes the nearest point's energy times a Gaussian
    fall-off)."""

    needs_columns = ("points",)

    def __init__(self, *, frac: float = 0.1, spread: float = 0.0):
        self.frac = frac
        self.spread = spread

    def apply(self, tables: Tables) -> Tables:
        check_fraction("dense: frac", self.frac)
        check_positive("dense: spread", self.spread, allow_zero=True)
        frac, spread = self.frac, self.spread
        df = rewrite_points(tables["detections"], lambda polys, score: dense_points(polys, frac=frac, spread=spread))
        return tables.replace(detections=df)


@register("rowmajor")
class RowMajor(Stage):
    """Emit every ``step``-th pixel of the dense set, in order of decreasing intensity.

    The dense set is the pixels >= ``frac`` of the peak, taken in order of decreasing intensity, row-major among equals: about 1/step of the dense size, same region."""

    needs_columns = ("points",)

    def __init__(self, *, step: int = 2, frac: float = 0.1, spread: float = 0.0):
        self.step = step
        self.frac = frac
        self.spread = spread

    def apply(self, tables: Tables) -> Tables:
        if int(self.step) != self.step or self.step < 1:
            raise ValueError(f"rowmajor: step must be a positive integer, got {self.step!r}")
        check_fraction("rowmajor: frac", self.frac)
        check_positive("rowmajor: spread", self.spread, allow_zero=True)
        params = dict(step=int(self.step), frac=self.frac, spread=self.spread)
        df = rewrite_points(tables["detections"], lambda polys, score: rowmajor_points(polys, **params))
        return tables.replace(detections=df)
