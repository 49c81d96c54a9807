"""Typed tables: the one schema every stage reads and writes.

Tables live in memory as polars DataFrames and on disk as Parquet. Each kind has a fixed
Arrow schema; the Parquet file carries key-value metadata (schema version, table kind, class
list, coordinate convention, source files with their hashes, producing recipe hash) that
:func:`read_table` validates.

**Every input clip is remembered**, including clips whose file held no annotation (a clip with no
detections is still a clip: dropping it from an exported folder drops its GT from the official
scoring and raises the metrics). A polars DataFrame has no metadata, so the clip list lives
beside the frame: in memory as a ``{clip: split}`` dict (``Ingested.clips`` from ingest, the recipe
runner's ``LoadedInputs.clips``), on disk in the Parquet metadata key ``calib.clips`` (JSON
``{clip: split}``; split "" except for GT read from split folders). :func:`write_table` stores
the given clips merged with the clips of the rows, :func:`table_clips` reads them back (the rows'
clips for files written before the key existed), and :func:`calib.io.dcase.export_table` writes
one file per listed clip, an empty annotation list where a clip has no rows. A stage that filters
rows therefore never loses a clip: whoever writes its output passes the input's clip list on
(``write_table(out, ..., clips=table_clips(input))``). Clip names (and GT splits) become output
path components, so both are checked with :mod:`calib.io.clipnames` on write and on read.

Coordinates follow the DCASE 2026 canvas: x in [0, 360] (x = (-azimuth + 180) mod 360), y in
[0, 180] (y = 90 - elevation), 1 px per degree. Points are kept as float64 so that a JSON file
read and written back gives equal numbers (the issue's lossless round trip), one list per polygon.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from calib.constants import CLASS_NAMES, N_CLASSES  # noqa: F401  (the class list the schemas carry)
from calib.io.clipnames import RULE, check_clip_name, is_safe_clip_name
from calib.publish import atomic_path, current_umask  # noqa: F401  (their home was here)

SCHEMA_VERSION = "1"
COORDINATES = "dcase2026-canvas: x=(-azimuth+180) mod 360 in [0,360], y=90-elevation in [0,180], degrees"

POINT = pl.Struct({"x": pl.Float64, "y": pl.Float64, "e": pl.Float64})
POLYGONS = pl.List(pl.List(POINT))

#: detections: one row per predicted annotation.
DETECTIONS = pl.Schema(
    {
        "system": pl.String,
        "clip": pl.String,
        "frame": pl.Int64,
        "det_id": pl.Int64,  # index of the annotation in its clip file: stable within the clip
        "class_id": pl.Int64,
        "score": pl.Float64,
        "distance": pl.Float64,  # nullable: cm
        "instance_id": pl.Int64,  # nullable
        "points": POLYGONS,
        "extra": pl.String,  # nullable: JSON of any keys we do not model, so nothing is lost
    }
)

#: truth: ground-truth annotations in the same shape.
TRUTH = pl.Schema(
    {
        "clip": pl.String,
        "split": pl.String,  # sub-folder of the GT root ("" when flat), e.g. dev-test-sony
        "frame": pl.Int64,
        "ann_id": pl.Int64,
        "class_id": pl.Int64,
        "instance_id": pl.Int64,
        "distance": pl.Float64,
        "points": POLYGONS,
        "category_str": pl.Boolean,  # category_id was written as a string of digits
        "extra": pl.String,
    }
)

#: teacher: SELD CSV rows (directions), in degrees; x/y are the canvas coordinates.
TEACHER = pl.Schema(
    {
        "clip": pl.String,
        "frame": pl.Int64,
        "class_id": pl.Int64,
        "track": pl.Int64,  # nullable
        "azimuth": pl.Float64,
        "elevation": pl.Float64,
        "distance": pl.Float64,  # nullable, cm
        "x": pl.Float64,
        "y": pl.Float64,
    }
)

#: priors: per clip and window, one probability column per class.
PRIORS = pl.Schema(
    {"clip": pl.String, "start_frame": pl.Int64, "end_frame": pl.Int64}
    | {f"p_{k}": pl.Float64 for k in range(N_CLASSES)}
)

KINDS: dict[str, pl.Schema] = {
    "detections": DETECTIONS,
    "truth": TRUTH,
    "teacher": TEACHER,
    "priors": PRIORS,
}

PREFIXES = ("feat_", "score_", "label_", "fuse_", "view", "track_")


class TableError(ValueError):
    """A table does not have the schema its kind requires."""


def empty(kind: str) -> pl.DataFrame:
    """An empty table of ``kind`` with the full schema."""
    return pl.DataFrame(schema=KINDS[kind])


def conform(df: pl.DataFrame, kind: str, *, where: str = "table") -> pl.DataFrame:
    """Check the required columns of ``kind`` exist with castable types; return the core columns
    first (cast to the schema's dtypes) followed by any derived columns, in their original order."""
    schema = KINDS[kind]
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise TableError(f"{where}: not a {kind} table, missing column(s) {missing}")
    exprs = []
    for name, dtype in schema.items():
        if df.schema[name] == dtype:
            exprs.append(pl.col(name))
        else:
            try:
                exprs.append(pl.col(name).cast(dtype, strict=True))
            except Exception as e:  # pragma: no cover - polars raises at collect time
                raise TableError(f"{where}: column {name!r} is {df.schema[name]}, expected {dtype}") from e
    extra = [pl.col(c) for c in df.columns if c not in schema]
    try:
        return df.select(exprs + extra)
    except pl.exceptions.PolarsError as e:
        raise TableError(f"{where}: cannot cast to the {kind} schema: {e}") from e


def metadata(kind: str, sources: Mapping[str, str] | None = None, recipe_hash: str | None = None,
             **extra: Any) -> dict[str, str]:
    """Key-value metadata stored in the Parquet footer."""
    md = {
        "calib.schema_version": SCHEMA_VERSION,
        "calib.kind": kind,
        "calib.classes": json.dumps(list(CLASS_NAMES)),
        "calib.coordinates": COORDINATES,
        "calib.sources": json.dumps(dict(sorted((sources or {}).items()))),
        "calib.recipe_hash": recipe_hash or "",
    }
    for k, v in extra.items():
        md[f"calib.{k}"] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return md


def clip_splits(df: pl.DataFrame, clips: Mapping[str, str] | Iterable[str] | None = None, *,
                where: str = "table") -> dict[str, str]:
    """Every clip of a table as ``{clip: split}``, sorted: the rows' clips (with their ``split``
    column when the table has one) merged with ``clips`` (a ``{clip: split}`` mapping, or names).
    Names and splits are checked as path components; a clip given two splits is an error."""
    out: dict[str, str] = {}
    if clips is not None:
        items = clips.items() if isinstance(clips, Mapping) else ((c, "") for c in clips)
        for clip, split in items:
            out[clip] = split or ""
    if "clip" in df.columns and df.height:
        cols = ["clip", "split"] if "split" in df.columns else ["clip"]
        pairs = df.select(cols).unique()
        dup = pairs.filter(pl.col("clip").is_duplicated()) if len(cols) == 2 else pairs.clear()
        if dup.height:
            raise TableError(f"{where}: clip {dup.get_column('clip')[0]!r} has rows in several splits "
                             f"{sorted(dup.get_column('split').to_list())}")
        for row in pairs.iter_rows():
            clip, split = row[0], (row[1] or "") if len(row) == 2 else ""
            if clip in out and out[clip] and split and out[clip] != split:
                raise TableError(f"{where}: clip {clip!r} is listed in split {out[clip]!r} but its rows are in {split!r}")
            out[clip] = split or out.get(clip, "")
    for clip, split in out.items():
        check_clip_name(clip, where, what="clip")
        if split and not is_safe_clip_name(split):
            raise TableError(f"{where}: clip {clip}: unsafe split {split!r} (a split is a folder name: {RULE})")
    return dict(sorted(out.items()))


#: a table in more runs of clips than this is filtered (copied) rather than sliced
MAX_CLIP_RUNS = 100_000


def clip_runs(df: pl.DataFrame) -> tuple[list[str], list[int], list[int]]:
    """(clip, first row, end row) of each run of consecutive rows of one clip, in row order (a
    clip may have several runs when its rows are not together)."""
    new = df.select((pl.col("clip") != pl.col("clip").shift(1)).fill_null(True)).to_series()
    starts = new.arg_true().to_list()
    return df.get_column("clip").gather(starts).to_list(), starts, starts[1:] + [df.height]


#: at most this many runs of kept rows are taken as slices by :func:`take_rows` (more: one copy)
MAX_KEPT_RUNS = 1024


def take_rows(df: pl.DataFrame, keep: np.ndarray) -> pl.DataFrame:
    """``df.filter(keep)``: the same rows in the same order, taken as zero-copy slices of ``df``
    when they come in at most :data:`MAX_KEPT_RUNS` runs (a threshold that keeps nearly every
    detection of a dev table would otherwise copy a gigabyte of points)."""
    keep = np.asarray(keep, dtype=bool)
    if keep.size != df.height:
        raise ValueError(f"take_rows: {keep.size} flags for {df.height} rows")
    edges = np.flatnonzero(np.diff(keep.view(np.int8), prepend=0, append=0))  # run starts and ends
    if edges.size == 0:
        return df.clear()
    if edges.size // 2 > MAX_KEPT_RUNS:
        return df.filter(pl.Series(keep, dtype=pl.Boolean))
    starts, stops = edges[0::2].tolist(), edges[1::2].tolist()
    if len(starts) == 1:
        return df if (starts[0], stops[0]) == (0, df.height) else df.slice(starts[0], stops[0] - starts[0])
    return pl.concat([df.slice(a, b - a) for a, b in zip(starts, stops)], how="vertical", rechunk=False)


def restrict_clips(df: pl.DataFrame, clips: Iterable[str]) -> pl.DataFrame:
    """The rows of ``clips``: ``df.filter(pl.col("clip").is_in(clips))``, the same rows in the same
    order, taken as zero-copy slices of ``df`` when its rows come in runs of one clip (as ingest
    and the stages write them), so a dev set's truth table (gigabytes of points) is not copied for
    every subset of clips that is scored or labelled."""
    want = set(clips)
    if df.height == 0 or "clip" not in df.columns:
        return df.filter(pl.col("clip").is_in(sorted(want)))
    names, starts, stops = clip_runs(df)
    if len(starts) > MAX_CLIP_RUNS:
        return df.filter(pl.col("clip").is_in(sorted(want)))
    spans: list[list[int]] = []
    for a, b, c in zip(starts, stops, names):
        if c in want:
            if spans and spans[-1][1] == a:  # next to the previous kept run: one slice
                spans[-1][1] = b
            else:
                spans.append([a, b])
    parts = [df.slice(a, b - a) for a, b in spans]
    if not parts:
        return df.clear()
    return parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical", rechunk=False)


def write_table(df: pl.DataFrame, path: str | os.PathLike, kind: str, *,
                sources: Mapping[str, str] | None = None, recipe_hash: str | None = None,
                clips: Mapping[str, str] | Iterable[str] | None = None, **extra_md: Any) -> Path:
    """Validate ``df`` as ``kind`` and write it to Parquet atomically (temp file + rename).

    ``clips``: the clips the table stands for beyond its rows' (``{clip: split}`` or names), kept
    in the ``calib.clips`` metadata with the rows' clips (see the module doc).
    Deterministic: the same frame gives byte-identical files (no timestamps, fixed writer)."""
    df = conform(df, kind, where=str(path))
    all_clips = clip_splits(df, clips, where=str(path))
    table = df.to_arrow()
    md = dict(table.schema.metadata or {})
    md.update({k.encode(): v.encode() for k, v in metadata(kind, sources, recipe_hash, **extra_md).items()})
    md[b"calib.clips"] = json.dumps(all_clips).encode()
    table = table.replace_schema_metadata(md)
    final, tmp = atomic_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    md = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in md.items() if k.decode().startswith("calib.")}


def read_table(path: str | os.PathLike, kind: str | None = None) -> pl.DataFrame:
    """Read a calib Parquet table, checking its metadata and schema.

    ``kind`` None accepts whatever kind the file declares."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such file")
    try:
        md = read_metadata(path)
    except Exception as e:
        raise TableError(f"{path}: not a readable Parquet file ({e})") from e
    declared = md.get("calib.kind")
    if declared is None:
        raise TableError(f"{path}: no calib metadata; write tables with calib (calib ingest)")
    if md.get("calib.schema_version") != SCHEMA_VERSION:
        raise TableError(f"{path}: schema version {md.get('calib.schema_version')!r}, this calib reads {SCHEMA_VERSION!r}")
    if kind is not None and declared != kind:
        raise TableError(f"{path}: is a {declared} table, expected {kind}")
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, pa.ArrowException) as e:
        raise TableError(f"{path}: not a readable Parquet file ({e})") from e
    df = conform(df, declared, where=str(path))
    _check_clip_column(df, str(path))
    _listed_clips(md, str(path))
    return df


def _check_clip_column(df: pl.DataFrame, where: str) -> None:
    """Clip names (and GT splits) of a table someone else may have written: each a safe path
    component; the error names the first row holding a bad one."""
    for col in ("clip", "split"):
        if col not in df.columns:
            continue
        values = df.get_column(col).unique().to_list()
        bad = [v for v in values if not (col == "split" and v in ("", None)) and not is_safe_clip_name(v)]
        if bad:
            first = sorted(bad, key=lambda v: (v is None, str(v)))[0]
            row = int(df.with_row_index("_row").filter(pl.col(col).eq_missing(first)).get_column("_row")[0])
            if col == "clip":
                check_clip_name(first, where, record=row, what="row")
            raise TableError(f"{where}: row {row}: unsafe split {first!r} (a split is a folder name: {RULE})")


def _listed_clips(md: Mapping[str, str], where: str) -> dict[str, str] | None:
    """The ``calib.clips`` metadata, checked; None when the file has none (older files)."""
    raw = md.get("calib.clips")
    if raw is None:
        return None
    try:
        clips = json.loads(raw)
    except ValueError:
        clips = None
    if not isinstance(clips, dict) or not all(isinstance(v, str) for v in clips.values()):
        raise TableError(f"{where}: calib.clips metadata is not a {{clip: split}} JSON object")
    for clip, split in clips.items():
        check_clip_name(clip, f"{where}: calib.clips metadata", what="clip")
        if split and not is_safe_clip_name(split):
            raise TableError(f"{where}: calib.clips metadata: clip {clip}: unsafe split {split!r} ({RULE})")
    return clips


def table_clips(path: str | os.PathLike) -> dict[str, str]:
    """Every clip a table stands for, ``{clip: split}``: the ``calib.clips`` metadata (clips without
    rows included), or for files written before it existed, the rows' clips."""
    try:
        md = read_metadata(path)
    except Exception as e:
        raise TableError(f"{path}: not a readable Parquet file ({e})") from e
    listed = _listed_clips(md, str(path))
    if listed is not None:
        return dict(sorted(listed.items()))
    cols = [c for c in ("clip", "split") if c in pq.read_schema(path).names]
    if "clip" not in cols:
        return {}
    return clip_splits(pl.read_parquet(path, columns=cols), where=str(path))


def table_kind(path: str | os.PathLike) -> str:
    return read_metadata(path).get("calib.kind", "")
