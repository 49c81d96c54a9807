"""``hull``: a sparse detection exported as its filled convex-hull region."""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from calib.render import energy_map, seam_split
from calib.stages.base import Stage, Tables, register
from calib.stages.emit.common import check_positive, rewrite_points

_RING = 16  # directions sampled on the circle a point is grown by


def _hull_vertices(xy: np.ndarray) -> np.ndarray | None:
    if len(np.unique(xy, axis=0)) < 3:
        return None
    try:
        return xy[ConvexHull(xy).vertices]
    except (QhullError, ValueError):
        return None


def hull_region(xy: np.ndarray, *, pad: float = 0.0, min_radius: float = 1.5) -> np.ndarray | None:
    """Vertices of the region: the convex hull of the points grown by ``pad`` degrees; a flat set
    (fewer than 3 distinct points, or collinear) is grown by at least ``min_radius``. y is kept
    within the poles. None when the region is still flat (``min_radius`` 0)."""
    verts = _hull_vertices(xy)
    r = pad if verts is not None else max(pad, min_radius)
    if r > 0:
        ang = np.linspace(0.0, 2 * np.pi, _RING, endpoint=False)
        ring = r * np.column_stack([np.cos(ang), np.sin(ang)])
        base = verts if verts is not None else np.unique(xy, axis=0)
        grown = (base[:, None, :] + ring[None, :, :]).reshape(-1, 2)
        grown[:, 1] = np.clip(grown[:, 1], 0.0, 180.0)
        verts = _hull_vertices(grown)
    return verts


def hull_points(polygons: list[np.ndarray], *, pad: float = 0.0, spacing: float = 3.0, min_radius: float = 1.5,
                flat: bool = False) -> list[np.ndarray]:
    """The detection's region (:func:`hull_region`) as its vertices plus fill points on a lattice
    every ``spacing`` degrees inside it. Every point carries the detection's energy there (the
    interpolation of its points inside their hull, the nearest point's energy outside it), or 1 when
    ``flat``: no point is 0, so the official linear interpolation covers the whole region instead of
    fading to nothing at its edge. A region crossing the seam becomes two polygons meeting on it."""
    emap = energy_map(polygons, spread=math.inf, pad=pad + max(min_radius, 0.0) + 1.0)
    pts = emap.points
    if len(pts) == 0:
        return []
    verts = hull_region(pts[:, :2], pad=pad, min_radius=min_radius)
    if verts is None:
        return []
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    gx = np.arange(math.ceil(lo[0] / spacing) * spacing, hi[0] + 1e-9, spacing)
    gy = np.arange(math.ceil(lo[1] / spacing) * spacing, hi[1] + 1e-9, spacing)
    mx, my = np.meshgrid(gx, gy)
    lattice = np.column_stack([mx.ravel(), my.ravel()])
    if len(lattice):
        eq = ConvexHull(verts).equations  # inside: normal . p + offset <= 0 for every facet
        lattice = lattice[np.all(lattice @ eq[:, :2].T + eq[:, 2] <= 1e-9, axis=1)]
    xy = np.unique(np.concatenate([verts, lattice]), axis=0)
    e = np.ones(len(xy)) if flat else emap.sample(xy[:, 0], xy[:, 1])
    if not flat and e.max() <= 0:
        e = np.ones(len(xy))
    return seam_split(xy[:, 0], xy[:, 1], e, support_step=spacing)


@register("hull")
class Hull(Stage):
    """Emit each sparse detection as its convex-hull region, filled so the interpolation covers it.

    The points are the hull vertices (grown by ``pad``
    degrees; flat or 1-2 point detections by at least ``min_radius``) plus lattice points every
    ``spacing`` degrees inside, all carrying the detection's energy (or 1 with ``flat``), so the
    official linear interpolation covers the intended region. For sparse point sets."""

    needs_columns = ("points",)

    def __init__(self, *, pad: float = 0.0, spacing: float = 3.0, min_radius: float = 1.5, flat: bool = False):
        self.pad = pad
        self.spacing = spacing
        self.min_radius = min_radius
        self.flat = flat

    def apply(self, tables: Tables) -> Tables:
        check_positive("hull: pad", self.pad, allow_zero=True)
        check_positive("hull: spacing", self.spacing)
        check_positive("hull: min_radius", self.min_radius, allow_zero=True)
        params = dict(pad=self.pad, spacing=self.spacing, min_radius=self.min_radius, flat=bool(self.flat))
        df = rewrite_points(tables["detections"], lambda polys, score: hull_points(polys, **params))
        return tables.replace(detections=df)
