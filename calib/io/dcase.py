"""DCASE 2026 Task 3 JSON files <-> calib tables, lossless.

Reading: :mod:`calib.io.discover` finds the files (one naming rule for every command),
:mod:`calib.io.jsonfile` parses each (a columnar fast path and a general path that give the same
columns) and :mod:`calib.io.validate` applies the rules (the same rules the scorer applies), then
the columns become a detections or truth table. Every input clip is remembered, including clips
whose file holds no annotation (:class:`~calib.io.ingested.Ingested` ``.clips``; on disk the
``calib.clips`` metadata, see :mod:`calib.tables`), and :func:`export_table` writes a file for each,
so ingest -> export -> score gives the metrics of the original folder.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from calib.constants import MAX_FILE_BYTES, sha256_bytes
from calib.io.clipnames import check_clip_name
from calib.io.discover import prediction_clip, prediction_index, read_file_bytes, truth_index
from calib.io.errors import InputError, InputWarning
from calib.io.ingested import Ingested
from calib.io.jsonfile import KNOWN_KEYS, Columns, parse_columns  # noqa: F401  (part of this module's API)
from calib.io.validate import repeated_objects, validate
from calib.publish import publish_staged, staging
from calib.tables import DETECTIONS, TRUTH, clip_splits, conform

_POINT_ARROW = pa.struct([("x", pa.float64()), ("y", pa.float64()), ("e", pa.float64())])
#: the clip a file names (``a.json``, ``a_inference.json``, ``a_std.json`` -> ``a``)
clip_name = prediction_clip


# ----------------------------------------------------------------------------------------------
# files -> tables
def _points_array(cols: Columns) -> pa.ListArray:
    xyz = cols.xyz
    n_points = len(xyz)
    cols.xyz = None  # hand the only reference over: each column is copied out, then the block is freed
    children = []
    for k in range(3):
        children.append(pa.array(np.ascontiguousarray(xyz[:, k])))
    del xyz
    struct = pa.StructArray.from_arrays(children, fields=list(_POINT_ARROW))
    polys = pa.ListArray.from_arrays(pa.array(cols.poly_offsets, pa.int32() if n_points < 2**31 else pa.int64()), struct)
    return pa.ListArray.from_arrays(pa.array(cols.ann_offsets, pa.int32()), polys)


def read_file(path: str | os.PathLike, kind: str = "pred", *, system: str = "", split: str = "",
              drop_unknown_classes: bool = False, fast: bool = True) -> tuple[pl.DataFrame, str]:
    """Read one DCASE JSON file into a detections (kind="pred") or truth (kind="gt") table.

    Returns (table, sha256 of the file). The clip is the file's name by the naming rule of
    :mod:`calib.io.discover`; a name that is not a safe clip name is an error naming the file."""
    path = Path(path)
    if kind not in ("pred", "gt"):
        raise ValueError(f"kind must be 'pred' or 'gt', got {kind!r}")
    clip = check_clip_name(prediction_clip(path), str(path), what="file")
    data = read_file_bytes(path)
    if kind == "pred" and len(data) > MAX_FILE_BYTES:
        warnings.warn(f"{path}: {len(data) / 2**20:.1f} MiB is over the challenge's 20 MiB per-file limit; "
                      "calib export will refuse to write it as a submission file", InputWarning, stacklevel=2)
    digest = sha256_bytes(data)
    cols = parse_columns(path, data, fast=fast)
    del data  # the raw bytes are as large as the parsed columns: free them before building the table
    keep = validate(path, cols, kind, unknown_classes="drop" if drop_unknown_classes else "error")
    n = cols.n
    arrays = {
        "clip": pa.array([clip] * n, pa.string()),
        "frame": pa.array(cols.frame.astype(np.int64)),
        "class_id": pa.array(np.where(keep, cols.category, 0).astype(np.int64)),  # dropped ids may not fit int64
        "distance": cols.distance,
        "instance_id": cols.instance_id,
        "points": _points_array(cols),
        "extra": pa.array(cols.extra, pa.string()),
    }
    if kind == "pred":
        arrays |= {"system": pa.array([system] * n, pa.string()), "det_id": pa.array(np.arange(n, dtype=np.int64)),
                   "score": pa.array(cols.score)}
        schema = DETECTIONS
    else:
        arrays |= {"split": pa.array([split] * n, pa.string()), "ann_id": pa.array(np.arange(n, dtype=np.int64)),
                   "category_str": pa.array(cols.category_str)}
        schema = TRUTH
    table = pa.table({name: arrays[name] for name in schema})
    df = pl.from_arrow(table)
    if not keep.all():
        df = df.filter(pl.Series(keep))
    return conform(df, "detections" if kind == "pred" else "truth", where=str(path)), digest


def prediction_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The prediction files at ``paths`` (files, or folders), by the rule of :mod:`calib.io.discover`."""
    return list(prediction_index(paths).values())


def truth_files(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """GT files ``<seq>_std.json`` in ``root`` or one folder below it, with their split (sub-folder)."""
    found = list(truth_index(root).values())
    if not found:
        raise InputError(root, "no <seq>_std.json ground-truth files here or one folder below")
    return found


def _progress(items, desc: str, show: bool | None):
    from tqdm.auto import tqdm

    show = (len(items) > 3) if show is None else show
    return tqdm(items, desc=desc, unit="file", disable=not show, leave=False)


def _read_pred(path, system: str, drop_unknown_classes: bool):
    return read_file(path, "pred", system=system, drop_unknown_classes=drop_unknown_classes)


def _read_gt(path, split: str, drop_unknown_classes: bool):
    return read_file(path, "gt", split=split, drop_unknown_classes=drop_unknown_classes)


def _read_all(read, items: list[tuple], desc: str, progress: bool | None, map_files) -> list:
    """[read(*item)] in order: here (with a progress bar), or through ``map_files(read, items)``
    (a parallel map the caller chose: :func:`calib.score.parallel.parallel_map`)."""
    if map_files is not None:
        return map_files(read, items)
    return [read(*it) for it in _progress(items, desc, progress)]


def read_predictions(paths: Sequence[str | os.PathLike], system: str | None = None, *,
                     drop_unknown_classes: bool = False, progress: bool | None = None, map_files=None) -> Ingested:
    """Read prediction files/folders into one detections table, remembering every clip read
    (those whose file holds no annotation too). ``map_files``: how to map the reading over the
    files (default: one after the other, here); the table is the same either way."""
    index = prediction_index(paths)
    if not index:
        raise InputError(", ".join(map(str, paths)), "no prediction *.json files found")
    if system is None:
        first = Path(paths[0])
        system = first.name if first.is_dir() else first.parent.name
    files = list(index.values())
    frames, sources = [], {}
    for f, (df, digest) in zip(files, _read_all(_read_pred, [(f, system, drop_unknown_classes) for f in files],
                                                "ingest", progress, map_files)):
        frames.append(df)
        sources[str(f)] = digest
    table = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=DETECTIONS)
    return Ingested(table, sources, {clip: "" for clip in index})


def read_truth(root: str | os.PathLike, *, drop_unknown_classes: bool = False,
               progress: bool | None = None, map_files=None) -> Ingested:
    """Read a GT folder (split sub-folders allowed) into one truth table, remembering every clip
    and its split; repeated objects (kept, as officially) are reported in ``notes``.
    ``map_files`` as :func:`read_predictions`."""
    index = truth_index(root)
    if not index:
        raise InputError(root, "no <seq>_std.json ground-truth files here or one folder below")
    files = list(index.values())
    frames, sources = [], {}
    for (f, _), (df, digest) in zip(files, _read_all(_read_gt, [(f, split, drop_unknown_classes) for f, split in files],
                                                     "ingest truth", progress, map_files)):
        frames.append(df)
        sources[str(f)] = digest
    table = pl.concat(frames, how="vertical")
    notes = []
    rep = repeated_objects(table)
    if rep.height:
        r = rep.row(0, named=True)
        notes.append(f"{int(rep.get_column('n').sum()) - rep.height} GT annotation(s) repeat an object (same clip, frame, "
                     f"class and instance_id) in {rep.get_column('clip').n_unique()} clip(s); kept, as the official "
                     f"scorers count each (first: clip {r['clip']}, frame {r['frame']}, class {r['class_id']}, "
                     f"instance {r['instance_id']}, {r['n']} times)")
    return Ingested(table, sources, {clip: split for clip, (_, split) in index.items()}, notes)


def ingest_predictions(paths: Sequence[str | os.PathLike], system: str | None = None, *,
                       drop_unknown_classes: bool = False, progress: bool | None = None,
                       map_files=None) -> tuple[pl.DataFrame, dict]:
    """(detections table, {file: sha256}) of prediction files/folders; :func:`read_predictions`
    also gives the clip list."""
    got = read_predictions(paths, system, drop_unknown_classes=drop_unknown_classes, progress=progress,
                           map_files=map_files)
    return got.table, got.sources


def ingest_truth(root: str | os.PathLike, *, drop_unknown_classes: bool = False,
                 progress: bool | None = None, map_files=None) -> tuple[pl.DataFrame, dict]:
    """(truth table, {file: sha256}) of a GT folder; :func:`read_truth` also gives the clip list."""
    got = read_truth(root, drop_unknown_classes=drop_unknown_classes, progress=progress, map_files=map_files)
    return got.table, got.sources


# ----------------------------------------------------------------------------------------------
# tables -> files
def _annotation_dicts(df: pl.DataFrame, kind: str) -> list[dict]:
    """Rebuild the JSON annotations of one clip, numbers as float64/int exactly as read (each polygon
    an (n, 3) float64 numpy view: serialize with ``orjson.OPT_SERIALIZE_NUMPY``)."""
    pts = df.get_column("points").to_arrow()
    pts = pts.combine_chunks() if isinstance(pts, pa.ChunkedArray) else pts
    ann_off = pts.offsets.to_numpy(zero_copy_only=False)
    polys = pts.values  # Arrow's whole child array, also where ``df`` is a slice of a larger table
    poly_off = polys.offsets.to_numpy(zero_copy_only=False)
    leaf = polys.values
    # only the points these rows refer to are read (a clip of a table partitioned by clip may share
    # the whole table's point buffer: reading all of it per clip was quadratic); each polygon is
    # a view of them, written by orjson's numpy path: the same bytes as its Python floats, without
    # a Python object per number
    lo, hi = (int(poly_off[ann_off[0]]), int(poly_off[ann_off[-1]])) if len(ann_off) else (0, 0)
    xyz = np.column_stack([leaf.field(c).to_numpy(zero_copy_only=False)[lo:hi] for c in ("x", "y", "e")])
    poly_off = (poly_off - lo).tolist()
    ann_off = ann_off.tolist()
    frames = df.get_column("frame").to_list()
    classes = df.get_column("class_id").to_list()
    distance = df.get_column("distance").to_list()
    iids = df.get_column("instance_id").to_list()
    extra = df.get_column("extra").to_list()
    scores = df.get_column("score").to_list() if kind == "pred" else None
    cat_str = df.get_column("category_str").to_list() if kind == "gt" else None
    out = []
    for i in range(len(df)):
        seg = [xyz[poly_off[j]: poly_off[j + 1]] for j in range(ann_off[i], ann_off[i + 1])]
        a: dict = {"metadata_frame_index": frames[i]}
        if iids[i] is not None:
            a["instance_id"] = iids[i]
        a["category_id"] = str(classes[i]) if cat_str is not None and cat_str[i] else classes[i]
        if scores is not None:
            a["score"] = scores[i]
        a["segmentation"] = seg
        if distance[i] is not None:
            a["distance"] = distance[i]
        if extra[i]:
            a.update(json.loads(extra[i]))
        out.append(a)
    return out


def dumps_clip(df: pl.DataFrame, kind: str) -> bytes:
    """Serialize one clip's rows (ordered as given) to DCASE JSON bytes."""
    return orjson.dumps({"annotations": _annotation_dicts(df, kind)}, option=orjson.OPT_SERIALIZE_NUMPY)


def export_table(df: pl.DataFrame, out_dir: str | os.PathLike, kind: str = "pred", *,
                 clips: Mapping[str, str] | Iterable[str] | None = None, max_bytes: int | None = MAX_FILE_BYTES,
                 progress: bool | None = None, where: str = "table") -> list[Path]:
    """Write one ``<seq>.json`` per clip (GT: ``<split>/<seq>_std.json``): every clip of the rows
    and of ``clips`` (``{clip: split}`` or names, e.g. :func:`calib.tables.table_clips`), a clip
    without rows as an empty annotation list, so the folder scores as the input did.

    Clip names and splits are checked (one safe path component each, ``where`` names the table in
    errors) before anything is written. All files are staged in a temporary folder and moved into
    ``out_dir`` only when every clip serialized within ``max_bytes``, so a failure leaves nothing
    behind."""
    if kind not in ("pred", "gt"):
        raise ValueError(f"kind must be 'pred' or 'gt', got {kind!r}")
    out_dir = Path(out_dir)
    if kind == "pred" and df.get_column("system").n_unique() > 1:
        raise InputError(out_dir, f"table holds several systems {sorted(df.get_column('system').unique().to_list())}; "
                         "export one system at a time (filter with --system)")
    order_col = "det_id" if kind == "pred" else "ann_id"
    splits = clip_splits(df, clips, where=where)
    written = []
    with staging(out_dir) as stage:
        parts = df.sort(["clip", order_col], maintain_order=True).partition_by("clip", as_dict=True, maintain_order=True)
        empty = df.clear()
        for clip in _progress(list(splits), "export", progress):
            data = dumps_clip(parts.get((clip,), empty), kind)
            if kind == "pred":
                rel = Path(f"{clip}.json")
                if max_bytes is not None and len(data) > max_bytes:
                    raise InputError(rel, f"would be {len(data) / 2**20:.2f} MiB, over the {max_bytes / 2**20:.0f} MiB "
                                     "per-file limit; coarsen the masks (emit stages / size guard) before exporting")
            else:
                rel = Path(splits[clip]) / f"{clip}_std.json"
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / rel).write_bytes(data)
            written.append(rel)
        publish_staged(stage, out_dir, merge=True)  # files replace files: other files of out_dir stay
    return [out_dir / r for r in written]


def load_annotations(path: str | os.PathLike) -> list[dict]:
    """The annotations of a DCASE JSON file as plain dicts (for tests and comparisons)."""
    return json.loads(Path(path).read_bytes())["annotations"]
