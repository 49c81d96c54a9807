"""What every emitter shares: running a batch emitter over a table's ``points``, chunk by chunk.

A batch emitter is a function ``(points, scores) -> (new points, has_output)`` over a
:class:`~calib.canvas.points.FlatPoints` of many detections: it returns, for each of them, its new
polygons (x unwrapped or not; they are rounded here) and whether it produced any (a detection it
gives nothing for keeps its own points). Detections are handed over in chunks of bounded work --
their points plus the pixels of their energy maps' windows (the points' box grown by what the
emitter grows it by) -- so every intermediate array stays small enough to live in the CPU cache.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from calib.canvas.points import (FlatPoints, choose_rows, concat, flatten, from_polygons, points_series,
                                 round_points)
from calib.canvas.sphere import boxes

#: (points of some detections, their scores) -> (their new points, which of them got any)
BatchEmitter = Callable[[FlatPoints, np.ndarray], tuple[FlatPoints, np.ndarray]]
#: work per chunk handed to a batch emitter: points plus map pixels
CHUNK_COST = 300_000


def detection_cost(fp: FlatPoints, grow: float = 0.0) -> np.ndarray:
    """Work a detection brings to a chunk: its points plus the pixels of its map window (its box
    grown by ``grow`` degrees each way)."""
    b = boxes(fp)
    area = np.where(b.empty, 0.0, (np.minimum(b.w, 360.0) + 2 * grow + 1) * (b.h + 2 * grow + 1))
    return fp.count + area


def chunk_bounds(cost: np.ndarray, max_cost: float = CHUNK_COST) -> list[tuple[int, int]]:
    """Consecutive runs [a, b) of detections of at most ``max_cost`` total cost each (a detection
    costing more is a run of its own)."""
    out, start, n = [], 0, len(cost)
    cum = np.cumsum(cost)
    while start < n:
        base = cum[start - 1] if start else 0
        stop = max(int(np.searchsorted(cum, base + max_cost, side="right")), start + 1)
        out.append((start, min(stop, n)))
        start = stop
    return out


def emit_chunks(fp: FlatPoints, scores: np.ndarray, emit: BatchEmitter, rows: np.ndarray | None = None,
                grow: float = 0.0, max_cost: float = CHUNK_COST) -> list[FlatPoints]:
    """``fp`` with the detections ``rows`` (default: all) rewritten by ``emit`` (numbers rounded),
    as consecutive chunks of detections; a detection without points, or one the emitter gives
    nothing for, keeps its points. ``grow``: how far (degrees) the emitter's maps reach past the
    points, for sizing the chunks."""
    scores = np.asarray(scores, np.float64)
    todo = None
    if rows is not None:
        todo = np.zeros(fp.n, bool)
        todo[np.asarray(rows, np.int64)] = True
    parts = []
    for a, b in chunk_bounds(detection_cost(fp, grow), max_cost):
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
                grow: float = 0.0) -> FlatPoints:
    """:func:`emit_chunks` joined into one set."""
    return concat(emit_chunks(fp, scores, emit, rows, grow))


def rewrite_points(df: pl.DataFrame, emit: BatchEmitter, rows: np.ndarray | None = None,
                   grow: float = 0.0) -> pl.DataFrame:
    """``df`` with ``points`` rewritten by the batch emitter ``emit`` (for every row, or only
    ``rows``). A detection without points, or one the emitter gives nothing for, keeps its points."""
    if len(df) == 0:
        return df
    fp = flatten(df.get_column("points"))
    scores = df.get_column("score").to_numpy() if "score" in df.columns else np.zeros(len(df))
    return df.with_columns(points_series(emit_chunks(fp, scores, emit, rows, grow)))


def emit_one(emit: BatchEmitter, polygons: list[np.ndarray], score: float = 0.0) -> list[np.ndarray]:
    """One detection through a batch emitter: its new polygons (rounded), or its own when it gives
    nothing (for tests and inspection)."""
    if not polygons:
        return polygons
    out = emit_points(from_polygons([polygons]), np.array([score]), emit)
    return out.polygons(0)


def spread_reach(spread: float) -> float:
    """How far (degrees, before the factor 3 of a Gaussian fall-off) a ``spread`` grows a map: the
    spread itself, 0 for none or an unbounded one (whose window does not grow)."""
    return spread if 0 < spread < np.inf else 0.0


def check_fraction(name: str, value: float, *, low_open: bool = False) -> None:
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value!r}")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
