"""What every emitter shares: running a batch emitter over a table's ``points``, chunk by chunk.

A batch emitter is a function ``(points, scores) -> (new points, has_output)`` over a
:class:`~calib.canvas.points.FlatPoints` of many detections: it returns, for each of them, its new
polygons (x unwrapped or not; they are rounded here) and whether it produced any (a detection it
gives nothing for keeps its own points). Detections are handed over in chunks of a bounded number
of points, so every intermediate array stays small enough to live in the CPU cache.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from calib.canvas.points import (FlatPoints, choose_rows, concat, flatten, from_polygons, points_series,
                                 round_points)

#: (points of some detections, their scores) -> (their new points, which of them got any)
BatchEmitter = Callable[[FlatPoints, np.ndarray], tuple[FlatPoints, np.ndarray]]
#: points per chunk handed to a batch emitter
CHUNK_POINTS = 20000


def chunk_bounds(fp: FlatPoints, max_points: int = CHUNK_POINTS) -> list[tuple[int, int]]:
    """Consecutive runs [a, b) of detections of at most ``max_points`` points each (a detection
    with more points is a run of its own)."""
    out, start = [], 0
    cum = np.cumsum(fp.count)
    while start < fp.n:
        base = cum[start - 1] if start else 0
        stop = max(int(np.searchsorted(cum, base + max_points, side="right")), start + 1)
        out.append((start, min(stop, fp.n)))
        start = stop
    return out


def emit_chunks(fp: FlatPoints, scores: np.ndarray, emit: BatchEmitter, rows: np.ndarray | None = None,
                max_points: int = CHUNK_POINTS) -> list[FlatPoints]:
    """``fp`` with the detections ``rows`` (default: all) rewritten by ``emit`` (numbers rounded),
    as consecutive chunks of detections; a detection without points, or one the emitter gives
    nothing for, keeps its points."""
    scores = np.asarray(scores, np.float64)
    todo = None
    if rows is not None:
        todo = np.zeros(fp.n, bool)
        todo[np.asarray(rows, np.int64)] = True
    parts = []
    for a, b in chunk_bounds(fp, max_points):
        sub = fp.slice(a, b)
        if todo is not None and not todo[a:b].any():
            parts.append(sub)
            continue
        new, has = emit(sub, scores[a:b])
        has = np.asarray(has, bool) & (sub.count > 0)
        if todo is not None:
            has &= todo[a:b]
        parts.append(choose_rows(sub, round_points(new), has))
    return parts


def emit_points(fp: FlatPoints, scores: np.ndarray, emit: BatchEmitter, rows: np.ndarray | None = None,
                max_points: int = CHUNK_POINTS) -> FlatPoints:
    """:func:`emit_chunks` joined into one set."""
    return concat(emit_chunks(fp, scores, emit, rows, max_points))


def rewrite_points(df: pl.DataFrame, emit: BatchEmitter, rows: np.ndarray | None = None) -> pl.DataFrame:
    """``df`` with ``points`` rewritten by the batch emitter ``emit`` (for every row, or only
    ``rows``). A detection without points, or one the emitter gives nothing for, keeps its points."""
    if len(df) == 0:
        return df
    fp = flatten(df.get_column("points"))
    scores = df.get_column("score").to_numpy() if "score" in df.columns else np.zeros(len(df))
    return df.with_columns(points_series(emit_chunks(fp, scores, emit, rows)))


def emit_one(emit: BatchEmitter, polygons: list[np.ndarray], score: float = 0.0) -> list[np.ndarray]:
    """One detection through a batch emitter: its new polygons (rounded), or its own when it gives
    nothing (for tests and inspection)."""
    if not polygons:
        return polygons
    out = emit_points(from_polygons([polygons]), np.array([score]), emit)
    return out.polygons(0)


def check_fraction(name: str, value: float, *, low_open: bool = False) -> None:
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value!r}")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
