"""What every emitter shares: running a batch emitter over a table's ``points``, chunk by chunk.

A batch emitter is a function ``(points, scores) -> (new points, has_output)`` over a
:class:`~calib.canvas.points.FlatPoints` of many detections: it returns, for each of them, its new
polygons (x unwrapped or not; they are rounded here) and whether it produced any (a detection it
gives nothing for keeps its own points). Detections are handed over in chunks of bounded work --
their points plus the pixels of their energy maps' windows (the points' box grown by what the
emitter grows it by; the points alone for an emitter that draws no map) -- so every intermediate
array stays small enough to live in the CPU cache. :func:`emit_cached` (what the stages use) first
looks every detection up in the emitted-detections cache (:mod:`.cache`) and hands over only the
distinct detections it does not know.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from calib.canvas.points import (FlatPoints, _take_or_slice, choose_rows, concat, flatten, from_polygons, gather, points_series,
                                 round_points, row_hashes)
from calib.stages.emit.cache import EmitCache, emit_cache

#: (points of some detections, their scores) -> (their new points, which of them got any)
BatchEmitter = Callable[[FlatPoints, np.ndarray], tuple[FlatPoints, np.ndarray]]
#: work per chunk handed to a batch emitter: points plus map pixels
CHUNK_COST = 300_000
#: the same for the emitters that draw every detection's energy map and read its pixels (dense,
#: rowmajor, compress, hull): their fixed cost per chunk (a few hundred numpy calls, the rounds of
#: the small Delaunay triangulations) weighs more than the larger temporaries of a larger chunk
MAP_CHUNK_COST = 1_000_000
#: points per chunk of the output handed back (cached and fresh detections gathered)
OUT_POINTS = 1 << 20


def detection_cost(fp: FlatPoints, grow: float | None = 0.0) -> np.ndarray:
    """Work a detection brings to a chunk: its points plus the pixels of its map window (its box
    grown by ``grow`` degrees each way; x taken as given, so a detection over the seam counts as
    360 degrees wide: only the chunks' sizes depend on it). ``grow=None``: the emitter draws no
    map, its points are the work."""
    if grow is None:
        return fp.count + 100.0  # its points and the pixels it reads (n x n samples)
    w = fp.reduce(np.maximum, fp.x, empty=np.nan) - fp.reduce(np.minimum, fp.x, empty=np.nan)
    h = fp.reduce(np.maximum, fp.y, empty=np.nan) - fp.reduce(np.minimum, fp.y, empty=np.nan)
    area = np.nan_to_num((np.minimum(w, 360.0) + 2 * grow + 1) * (h + 2 * grow + 1), nan=0.0)
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


def _emit_runs(fp: FlatPoints, scores: np.ndarray, emit: BatchEmitter, grow: float, max_cost: float,
               todo: np.ndarray | None = None, rows: np.ndarray | None = None):
    """(a, b, new points rounded, has) for consecutive chunks [a, b) of detections (of ``fp``, or
    of its detections ``rows`` when given), skipping the chunks with nothing ``todo``: what
    ``emit`` gives them and which it gave anything."""
    cost = detection_cost(fp, grow)
    if rows is not None:
        cost = cost[rows]
    for a, b in chunk_bounds(cost, max_cost):
        if todo is not None and not todo[a:b].any():
            yield a, b, None, np.zeros(b - a, bool)
            continue
        sub = fp.slice(a, b) if rows is None else _take_or_slice(fp, rows[a:b])
        new, has = emit(sub, scores[a:b] if rows is None else scores[rows[a:b]])
        has = np.asarray(has, bool) & (sub.count > 0)
        if todo is not None:
            has &= todo[a:b]
        yield a, b, round_points(new), has


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
    return [fp.slice(a, b) if new is None else choose_rows(fp.slice(a, b), new, has)
            for a, b, new, has in _emit_runs(fp, scores, emit, grow, max_cost, todo)]


def emit_points(fp: FlatPoints, scores: np.ndarray, emit: BatchEmitter, rows: np.ndarray | None = None,
                grow: float = 0.0) -> FlatPoints:
    """:func:`emit_chunks` joined into one set."""
    return concat(emit_chunks(fp, scores, emit, rows, grow))


def emit_cached(fp: FlatPoints, scores: np.ndarray, emit: BatchEmitter, emitter: str, *,
                rows: np.ndarray | None = None, grow: float | None = 0.0, key_extra: np.ndarray | None = None,
                keys: np.ndarray | None = None, cache: EmitCache | None = None,
                max_cost: float = CHUNK_COST) -> list[FlatPoints]:
    """:func:`emit_chunks` through the emitted-detections cache (:mod:`.cache`): each detection
    is looked up by its content (its points' hash and ``key_extra``, what the emitter reads of its
    score) under the key ``emitter`` (:func:`.cache.emitter_key`), and only the distinct
    detections the cache does not know are handed to ``emit`` (then stored). ``keys``: (n, 2)
    uint64 per detection instead of its points' hash, for an emitter that reads less than all of
    them (what it gives must then depend on the key only). Returns the output as consecutive
    chunks of detections."""
    cache = emit_cache() if cache is None else cache
    scores = np.asarray(scores, np.float64)
    todo = fp.count > 0
    if rows is not None:
        chosen = np.zeros(fp.n, bool)
        chosen[np.asarray(rows, np.int64)] = True
        todo &= chosen
    idx = np.flatnonzero(todo)
    if idx.size == 0:
        return [fp]
    if keys is None:
        keys = row_hashes(fp, None if key_extra is None else np.asarray(key_extra, np.float64))
    keys = np.asarray(keys, np.uint64)[idx]
    ukeys, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    known = cache.get(emitter, ukeys)
    # where each distinct detection's output is: row ``u_row`` of ``parts[u_part]`` (part 0: fp)
    parts = [fp] + known.parts
    u_part = np.where(known.found, known.part + 1, -1)
    u_row = known.row.copy()
    has = known.has.copy()
    missing = np.flatnonzero(~known.found)
    missing = missing[np.argsort(first[missing], kind="stable")]  # in row order: chunks are slices
    if missing.size:
        reps = idx[first[missing]]  # one row of each distinct detection to emit
        for a, b, new, new_has in _emit_runs(fp, scores, emit, grow, max_cost, rows=reps):
            u = missing[a:b]
            cache.put(emitter, ukeys[u], new_has, new)
            u_part[u] = len(parts)
            u_row[u] = np.arange(b - a)
            has[u] = new_has
            parts.append(new)
        cache.stats.emitted += int(missing.size)
    row_part = np.zeros(fp.n, np.int64)
    row_row = np.arange(fp.n)
    use = has[inverse]
    row_part[idx[use]] = u_part[inverse[use]]
    row_row[idx[use]] = u_row[inverse[use]]
    return _assemble(parts, row_part, row_row)


def _assemble(parts: list[FlatPoints], part: np.ndarray, row: np.ndarray) -> list[FlatPoints]:
    """Detection k of the output is detection ``row[k]`` of ``parts[part[k]]``: the output as
    chunks -- views of the parts where long runs of consecutive rows come from one part, else
    gathered in chunks of bounded size (large arrays cost more per element than small ones)."""
    n = part.size
    brk = np.flatnonzero((part[1:] != part[:-1]) | (row[1:] != row[:-1] + 1)) + 1
    if brk.size <= n // 64:
        starts = np.r_[0, brk]
        ends = np.r_[brk, n]
        return [parts[int(part[a])].slice(int(row[a]), int(row[a]) + int(b - a)) for a, b in zip(starts, ends)]
    out_count = np.empty(n, np.int64)
    for p in np.unique(part).tolist():
        sel = part == p
        out_count[sel] = parts[p].count[row[sel]]
    return [gather(parts, part[a:b], row[a:b]) for a, b in chunk_bounds(out_count + 1.0, OUT_POINTS)]


#: rows whose points are flattened, hashed and emitted together: a dev table's 28M points at once
#: took 1.5 GiB of temporaries on top of the table; each row's output depends on that row alone
REWRITE_ROWS = 1 << 16


def rewrite_points(df: pl.DataFrame, emit: BatchEmitter, rows: np.ndarray | None = None,
                   grow: float = 0.0, *, emitter: str | None = None, key_extra=None,
                   max_cost: float = CHUNK_COST) -> pl.DataFrame:
    """``df`` with ``points`` rewritten by the batch emitter ``emit`` (for every row, or only
    ``rows``). A detection without points, or one the emitter gives nothing for, keeps its points.
    ``emitter``: the emitter's cache key (:func:`.cache.emitter_key`): what each detection gives is
    then looked up in, and kept in, the emitted-detections cache (``key_extra``: per row, what the
    emitter reads of the score). ``max_cost``: the work per chunk handed to ``emit``
    (:func:`chunk_bounds`; what a detection gives does not depend on it). Done
    :data:`REWRITE_ROWS` rows at a time."""
    if len(df) <= REWRITE_ROWS:
        return _rewrite_block(df, emit, rows, grow, emitter, key_extra, max_cost)
    rows = None if rows is None else np.asarray(rows, np.int64)
    extra = None if key_extra is None else np.asarray(key_extra)
    parts = []
    for a in range(0, len(df), REWRITE_ROWS):
        b = min(a + REWRITE_ROWS, len(df))
        sub_rows = None if rows is None else rows[(rows >= a) & (rows < b)] - a
        block = _rewrite_block(df.slice(a, b - a).select("points", *(["score"] if "score" in df.columns else [])),
                               emit, sub_rows, grow, emitter, None if extra is None else extra[a:b], max_cost)
        parts.append(block.get_column("points"))
    # kept as chunks, as one block's output is: joining them copied every emitted point again
    return df.with_columns(pl.concat(parts, rechunk=False))


def _rewrite_block(df: pl.DataFrame, emit: BatchEmitter, rows, grow: float, emitter: str | None,
                   key_extra, max_cost: float = CHUNK_COST) -> pl.DataFrame:
    if len(df) == 0:
        return df
    fp = flatten(df.get_column("points"))
    scores = df.get_column("score").to_numpy() if "score" in df.columns else np.zeros(len(df))
    if emitter is None:
        return df.with_columns(points_series(emit_chunks(fp, scores, emit, rows, grow, max_cost)))
    out = emit_cached(fp, scores, emit, emitter, rows=rows, grow=grow, key_extra=key_extra, max_cost=max_cost)
    return df.with_columns(points_series(out))


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
