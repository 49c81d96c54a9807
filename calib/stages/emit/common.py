"""What every emitter shares: applying a per-detection function to a table's ``points``."""
from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from calib.render import flatten, polygons_series, round_points

#: polygons of one detection, score -> new polygons (an empty list keeps the detection's points)
PointsFn = Callable[[list[np.ndarray], float], list[np.ndarray]]


def emit_one(fn: PointsFn, polys: list[np.ndarray], score: float) -> list[np.ndarray]:
    """``fn`` applied to one detection, numbers rounded; its own polygons when it gives nothing."""
    if not polys:
        return polys
    new = fn(polys, score)
    return [round_points(p) for p in new] if new else polys


def rewrite_points(df: pl.DataFrame, fn: PointsFn, rows: np.ndarray | None = None) -> pl.DataFrame:
    """``df`` with ``points`` rewritten by ``fn`` (for every row, or only ``rows``).

    A detection without points, or one the function returns nothing for, keeps its points."""
    if len(df) == 0:
        return df
    fp = flatten(df.get_column("points"))
    scores = df.get_column("score").to_numpy()
    todo = np.zeros(len(df), bool)
    todo[np.arange(len(df)) if rows is None else rows] = True
    groups = [emit_one(fn, fp.polygons(i), float(scores[i])) if todo[i] else fp.polygons(i) for i in range(len(df))]
    return df.with_columns(polygons_series(groups))


def check_fraction(name: str, value: float, *, low_open: bool = False) -> None:
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value!r}")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
