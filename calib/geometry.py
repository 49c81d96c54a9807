"""Directions on the sphere and on the DCASE 2026 canvas: small pure, vectorized functions.

Angles are degrees. Azimuth φ in (-180, 180], elevation θ in [-90, 90]; the canvas has
``x = (-φ + 180) mod 360`` and ``y = 90 - θ`` (calib.io.seld.to_canvas / from_canvas).

The test-time ACS (audio channel swap) transforms for a tetrahedral MIC (or FOA) array are the
eight of Mazzon et al. 2019 ("First order ambisonics domain spatial augmentation for DNN-based
direction of arrival estimation", DCASE 2019), as the issue lists them, view k applying
``ACS_TRANSFORMS[k]``:

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

import numpy as np
import polars as pl

from calib.io.seld import from_canvas, to_canvas

__all__ = [
    "ACS_TRANSFORMS", "acs_forward", "acs_inverse", "acs_canvas_coefficients", "transform_points",
    "wrap_azimuth", "unit_vectors", "vector_directions", "great_circle", "pairwise_great_circle",
    "mean_direction", "flat_points", "peak_points", "from_canvas", "to_canvas",
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


def flat_points(points: pl.Series) -> pl.DataFrame:
    """One row per point of a polygons column: ``row`` (position in the series), ``poly``
    (polygon index), ``x``, ``y``, ``e``; rows without points are absent."""
    df = pl.DataFrame({"points": points}).with_row_index("row")
    df = df.explode("points").with_columns(pl.int_range(pl.len()).over("row").alias("poly"))
    df = df.explode("points").drop_nulls("points")
    return df.select(pl.col("row").cast(pl.Int64), pl.col("poly").cast(pl.Int64),
                     pl.col("points").struct.field("x"), pl.col("points").struct.field("y"),
                     pl.col("points").struct.field("e"))


def peak_points(points: pl.Series) -> pl.DataFrame:
    """Peak point of each detection: the first point (in polygon, then point order) with the
    largest intensity. Columns ``x``, ``y``, ``e``, one row per input row; null where it has no
    points."""
    flat = flat_points(points).with_row_index("order")
    peaks = (flat.sort(["row", "e", "order"], descending=[False, True, False])
             .unique("row", keep="first", maintain_order=True))
    return (pl.DataFrame({"row": np.arange(len(points), dtype=np.int64)})
            .join(peaks.select("row", "x", "y", "e"), on="row", how="left")
            .sort("row").drop("row"))
