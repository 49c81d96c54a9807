"""Helpers shared by the fusion stages (private)."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import polars as pl

from calib.canvas.points import peak_points
from calib.constants import N_CLASSES
from calib.io.seld import from_canvas
from calib.tables import DETECTIONS, POLYGONS

CORE = list(DETECTIONS)


def with_score_raw(df: pl.DataFrame) -> pl.DataFrame:
    """Keep the upstream raw score in ``score_raw`` (created from ``score`` when absent)."""
    return df if "score_raw" in df.columns else df.with_columns(pl.col("score").alias("score_raw"))


def empty_detections(extra: Mapping[str, pl.DataType] | None = None) -> pl.DataFrame:
    return pl.DataFrame(schema=pl.Schema(dict(DETECTIONS) | dict(extra or {})))


def stack_systems(systems: Mapping[str, pl.DataFrame], *, source: str = "fuse_source") -> pl.DataFrame:
    """All systems' detections in one frame, in system-name order, tagged with ``source`` (the
    key of the systems mapping) and with ``score_raw``. Columns missing in some systems are null."""
    parts = [with_score_raw(df).with_columns(pl.lit(name, pl.String).alias(source))
             for name, df in sorted(systems.items())]
    if not parts:
        return empty_detections({"score_raw": pl.Float64, source: pl.String})
    return pl.concat(parts, how="diagonal_relaxed")


def renumber(df: pl.DataFrame, system: str, order: list[str]) -> pl.DataFrame:
    """One output system: ``system`` set, rows sorted by ``order`` and det_id re-assigned
    0..n-1 within each clip (unique and stable, as export needs)."""
    df = df.sort(order)
    return df.with_columns(pl.lit(system, pl.String).alias("system"),
                           pl.int_range(pl.len(), dtype=pl.Int64).over("clip").alias("det_id"))


def check_class_keys(mapping: Mapping, what: str) -> dict[int, object]:
    """A dict keyed by class id; TOML writes keys as strings, so "3" and 3 are the same class."""
    out: dict[int, object] = {}
    for k, v in (mapping or {}).items():
        try:
            cls = int(k)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: key {k!r} is not a class id") from None
        if not 0 <= cls < N_CLASSES:
            raise ValueError(f"{what}: class {cls} outside 0..{N_CLASSES - 1}")
        out[cls] = v
    return out


def peak_directions(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with its detections' peak point as ``peak_az``, ``peak_el`` (degrees; null when a
    detection has no points)."""
    peaks = peak_points(df.get_column("points"))
    az, el = from_canvas(peaks.get_column("x").fill_null(np.nan).to_numpy(),
                         peaks.get_column("y").fill_null(np.nan).to_numpy())
    return df.with_columns(pl.Series("peak_az", az).fill_nan(None), pl.Series("peak_el", el).fill_nan(None))


def point_polygons(x, y, e=None) -> pl.Series:
    """One single-point polygon per direction: [[{x, y, e}]] (e = 1 unless given)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.ones_like(x) if e is None else np.asarray(e, dtype=np.float64)
    pts = pl.DataFrame({"x": x, "y": np.asarray(y, dtype=np.float64), "e": e}).select(pl.struct("x", "y", "e"))
    return pts.to_series().reshape((len(x), 1, 1)).cast(POLYGONS).alias("points")
