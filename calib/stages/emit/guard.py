"""Size guard: keep every exported clip file within the challenge's 20 MiB limit.

Sizes are exact: a clip file is ``{"annotations":[a1,a2,...]}`` as :func:`calib.io.dcase.dumps_clip`
writes it, so its size is 18 bytes + the sum of each annotation's JSON + the commas between them,
and each annotation's JSON is measured on its own. A clip over the limit is coarsened step by step,
in this order, each step applied to the largest detections first and only until the clip fits:

1. ``round``: intensities rescaled to peak 1 and rounded to 3 decimals, coordinates to 2 decimals
   (the scorers normalise every mask by its peak, so this changes nothing but the last digits);
2. ``drop_low``: points below 10% of the detection's peak dropped (when at least 3 points remain);
3. ``compress4``: the ``compress`` emitter with 4 x 4 cells;
4. ``compress8``: the same with 8 x 8 cells;
5. ``grid3``: the ``grid`` emitter, 3 x 3 points;
6. ``drop``: lowest-score detections dropped (ties: the later det_id first) until the clip fits.

The report lists, per clip and step, how many detections were coarsened (or dropped) and the
points and bytes before and after.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from calib.constants import MAX_FILE_BYTES
from calib.io.dcase import _annotation_dicts, export_table
from calib.canvas.points import FlatPoints, concat, flatten, offsets_of, points_column
from calib.stages.emit.common import emit_points
from calib.stages.emit.compress import compress_batch
from calib.stages.emit.grid import grid_batch

STEPS = ("round", "drop_low", "compress4", "compress8", "grid3", "drop")
REPORT_SCHEMA = {"system": pl.String, "clip": pl.String, "step": pl.String, "detections": pl.Int64,
                 "points_before": pl.Int64, "points_after": pl.Int64, "bytes_before": pl.Int64,
                 "bytes_after": pl.Int64}
_EMPTY_FILE = len(b'{"annotations":[]}')


def _round(fp: FlatPoints, scores) -> tuple[FlatPoints, np.ndarray]:
    peak = fp.reduce(np.maximum, fp.e, empty=0.0)
    scale = np.where(peak > 0, 1.0 / np.where(peak > 0, peak, 1.0), 1.0)[fp.row]
    return fp.with_values(np.round(fp.x, 2), np.round(fp.y, 2), np.round(fp.e * scale, 3)), fp.count > 0


def _drop_low(fp: FlatPoints, scores) -> tuple[FlatPoints, np.ndarray]:
    peak = fp.reduce(np.maximum, fp.e, empty=0.0)
    kept = fp.e >= 0.1 * peak[fp.row]
    per_poly = np.bincount(fp.poly_of_point[kept], minlength=fp.n_polys)
    polys = per_poly > 0  # polygons left empty go
    out = FlatPoints(fp.x[kept], fp.y[kept], fp.e[kept],
                     offsets_of(np.bincount(fp.det_of_poly[polys], minlength=fp.n)), offsets_of(per_poly[polys]))
    return out, out.count >= 3


COARSEN = {
    "round": _round,
    "drop_low": _drop_low,
    "compress4": lambda fp, scores: compress_batch(fp, scores, cell=4, cell_high=4),
    "compress8": lambda fp, scores: compress_batch(fp, scores, cell=8, cell_high=8),
    "grid3": lambda fp, scores: grid_batch(fp, n=3),
}


def annotation_sizes(df: pl.DataFrame) -> np.ndarray:
    """Bytes of each row's annotation in the exported JSON (rows as given)."""
    if len(df) == 0:
        return np.zeros(0, np.int64)
    return np.fromiter((len(orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY)) for a in _annotation_dicts(df, "pred")),
                       np.int64, len(df))


def file_bytes(sizes: np.ndarray) -> int:
    """Size of a clip file holding annotations of these sizes."""
    return int(_EMPTY_FILE + sizes.sum() + max(len(sizes) - 1, 0))


@dataclass
class GuardResult:
    table: pl.DataFrame
    report: pl.DataFrame  # REPORT_SCHEMA; empty when every clip already fitted

    def summary(self) -> str:
        if len(self.report) == 0:
            return "size guard: every clip within the limit, nothing coarsened"
        by = self.report.group_by("step", maintain_order=True).agg(pl.col("detections").sum(),
                                                                   pl.col("points_before").sum(),
                                                                   pl.col("points_after").sum())
        clips = self.report.select(pl.struct("system", "clip").n_unique()).item()
        parts = [f"{r['step']}: {r['detections']} detection(s), {r['points_before']} -> {r['points_after']} points"
                 for r in by.iter_rows(named=True)]
        return f"size guard: {clips} clip(s) coarsened; " + "; ".join(parts)


# Upper bounds of the JSON bytes of one point ("[x,y,e]," with the longest float reprs), of a
# polygon's brackets and comma, and of an annotation without its points and extra keys.
_POINT_MAX, _POLY_MAX, _ANN_MAX = 3 * 24 + 5, 3, 256


def size_upper_bound(df: pl.DataFrame) -> int:
    """A cheap upper bound of the clip file's size (no serialization): clips under the limit by this
    bound skip the exact, slower measurement."""
    fp = flatten(df.get_column("points"))
    extra = df.get_column("extra").str.len_bytes().fill_null(0).sum()
    return int(_EMPTY_FILE + fp.n_points * _POINT_MAX + fp.n_polys * _POLY_MAX
               + len(df) * (_ANN_MAX + 1) + extra)


def _guard_clip(part: pl.DataFrame, max_bytes: int, steps, batch: int) -> tuple[pl.DataFrame, list[dict]]:
    if size_upper_bound(part) <= max_bytes:
        return part, []
    sizes = annotation_sizes(part)
    total = file_bytes(sizes)
    report = []
    if total <= max_bytes:
        return part, report
    system, clip = part.get_column("system")[0], part.get_column("clip")[0]
    fp = flatten(part.get_column("points"))  # replaced chunk by chunk; the column is rebuilt once
    npts = fp.count.copy()
    scores = part.get_column("score").to_numpy()
    det_ids = part.get_column("det_id").to_numpy()
    alive = np.ones(len(part), bool)
    for step in steps:
        if total <= max_bytes:
            break
        before_bytes = total
        rows = np.flatnonzero(alive)
        if step == "drop":
            order = rows[np.lexsort((-det_ids[rows], scores[rows]))]
            saved = np.cumsum(sizes[order] + 1)  # an annotation and its comma
            n_drop = min(int(np.searchsorted(saved, total - max_bytes)) + 1, len(order))
            dropped = order[:n_drop]
            alive[dropped] = False
            total = file_bytes(sizes[alive])
            report.append(dict(system=system, clip=clip, step=step, detections=n_drop,
                               points_before=int(npts[dropped].sum()), points_after=0,
                               bytes_before=before_bytes, bytes_after=total))
            continue
        fn = COARSEN[step]
        candidates = rows[np.lexsort((det_ids[rows], -sizes[rows]))]
        done = []
        points_before = points_after = 0
        for start in range(0, len(candidates), batch):
            chunk = candidates[start:start + batch]
            new = emit_points(fp.take(chunk), scores[chunk], fn)
            sizes[chunk] = annotation_sizes(part[chunk].with_columns(points_column(new)))
            fp = _replace_rows(fp, chunk, new)
            n_new = new.count
            points_before += int(npts[chunk].sum())
            points_after += int(n_new.sum())
            npts[chunk] = n_new
            total = file_bytes(sizes[alive])
            done.append(chunk)
            if total <= max_bytes:
                break
        report.append(dict(system=system, clip=clip, step=step, detections=int(sum(len(c) for c in done)),
                           points_before=points_before, points_after=points_after,
                           bytes_before=before_bytes, bytes_after=total))
    if total > max_bytes:
        raise ValueError(f"size guard: clip {clip!r} of system {system!r} is still {total / 2**20:.2f} MiB after "
                         f"steps {list(steps)}; add 'drop' to the steps")
    part = part.with_columns(points_column(fp))
    return part.filter(pl.Series(alive)), report


def _replace_rows(fp: FlatPoints, rows: np.ndarray, new: FlatPoints) -> FlatPoints:
    """``fp`` with the detections ``rows`` replaced by those of ``new`` (in that order)."""
    pick = np.arange(fp.n)
    pick[rows] = fp.n + np.arange(len(rows))
    return concat([fp, new]).take(pick)


def guard_sizes(df: pl.DataFrame, max_bytes: int = MAX_FILE_BYTES, steps=STEPS, *, batch: int = 64) -> GuardResult:
    """Coarsen the detections of every (system, clip) whose exported file would exceed ``max_bytes``
    (see the module docstring for the order of ``steps``). Rows keep their order; clips within the
    limit are untouched."""
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"size guard: unknown step(s) {unknown}; known: {list(STEPS)}")
    if len(df) == 0:
        return GuardResult(df, pl.DataFrame(schema=REPORT_SCHEMA))
    df = df.with_row_index("_guard_row")
    parts, report = [], []
    for part in df.sort(["system", "clip", "det_id"], maintain_order=True).partition_by(["system", "clip"], maintain_order=True):
        new, rep = _guard_clip(part, max_bytes, steps, batch)
        parts.append(new)
        report += rep
    out = pl.concat(parts, how="vertical").sort("_guard_row").drop("_guard_row")
    return GuardResult(out, pl.DataFrame(report, schema=REPORT_SCHEMA))


def export_guarded(df: pl.DataFrame, out_dir: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES,
                   steps=STEPS, progress: bool | None = None, clips=None,
                   where: str = "table") -> tuple[list[Path], GuardResult]:
    """Guard the sizes, then export one file per clip (no file can exceed ``max_bytes``); ``clips``
    as :func:`calib.io.dcase.export_table` (clips without rows get an empty file)."""
    res = guard_sizes(df, max_bytes, steps)
    files = export_table(res.table, out_dir, "pred", max_bytes=max_bytes, progress=progress, clips=clips, where=where)
    return files, res
