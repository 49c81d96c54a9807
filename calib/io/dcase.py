"""DCASE 2026 Task 3 JSON files <-> calib tables, lossless.

A file is ``{"annotations": [...]}``; an annotation has ``metadata_frame_index``, ``category_id``
(int; in GT sometimes a string of digits), ``segmentation`` (a list of polygons, each a list of
``[x, y, intensity]`` triplets), predictions ``score``, optionally ``instance_id``, ``distance`` and
keys we do not model (kept verbatim as JSON in the ``extra`` column).

Reading has two paths that give the same table: a columnar fast path (pyarrow's JSON reader, no
Python object per number, so a 100 MB dense file costs about one ``json.load`` and a fraction of
its memory) and a general path (orjson, then the standard library for files with NaN tokens) that
handles strings as class ids, unknown keys and every malformed case. Both feed one vectorized
validator, so every bad file gets the same message naming the file and the annotation index.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from calib.io.errors import InputError
from calib.tables import DETECTIONS, N_CLASSES, POINT, TRUTH, conform

MAX_FILE_BYTES = 20 * 1024 * 1024  # the challenge's per-file limit
KNOWN_KEYS = ("metadata_frame_index", "instance_id", "category_id", "score", "segmentation", "distance")
_POINT_ARROW = pa.struct([("x", pa.float64()), ("y", pa.float64()), ("e", pa.float64())])


@dataclass
class Columns:
    """One file's annotations in columnar form, before validation."""

    frame: np.ndarray  # float64, NaN where missing
    category: np.ndarray  # float64, NaN where missing / not a number
    category_str: np.ndarray  # bool: category_id was a string
    score: np.ndarray  # float64, NaN where missing (``score_present`` tells)
    score_present: np.ndarray  # bool
    distance: pa.Array  # float64 with nulls
    instance_id: pa.Array  # int64 with nulls
    ann_offsets: np.ndarray  # polygons of annotation i: ann_offsets[i]:ann_offsets[i+1]
    poly_offsets: np.ndarray  # points of polygon j: poly_offsets[j]:poly_offsets[j+1]
    xyz: np.ndarray  # (n_points, 3) float64
    extra: list  # JSON string or None per annotation
    missing: dict  # key -> first annotation index missing it (required keys)

    @property
    def n(self) -> int:
        return len(self.frame)


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------
# parsing
_CHUNK_BYTES = 8 << 20
_HEAD = re.compile(rb'\s*\{\s*"annotations"\s*:\s*\[')


def _annotation_chunks(data: bytes) -> list[bytes]:
    """Cut ``{"annotations": [a, b, ...]}`` between annotations into ~8 MB documents of the same form.

    pyarrow's JSON reader needs about 3x its block in memory; parsing pieces keeps the peak near
    the file size. A cut is made after a '}' followed by ',' (annotations hold no nested objects on
    the fast path); a wrong cut (a brace inside a string) yields invalid JSON, and then the general
    path reads the file instead."""
    m = _HEAD.match(data)
    tail = data.rstrip()
    if m is None or not tail.endswith(b"}"):
        return [data]
    stop = tail.rfind(b"]")
    if stop < m.end() or tail[stop + 1:].strip() != b"}":
        return [data]
    pieces, prev, target = [], m.end(), m.end() + _CHUNK_BYTES
    while target < stop:
        c = data.find(b"}", target, stop)
        if c < 0:
            break
        j = c + 1
        while j < stop and data[j] in b" \t\r\n":
            j += 1
        if data[j:j + 1] == b",":
            pieces.append(b'{"annotations":[' + data[prev:c + 1] + b"]}")
            prev = j + 1
            target = prev + _CHUNK_BYTES
        else:
            target = c + 1
    pieces.append(b'{"annotations":[' + data[prev:stop] + b"]}")
    return pieces


def _fast_columns(data: bytes) -> Columns | None:
    """Columnar parse with pyarrow, in pieces; None when the file needs the general path."""
    parts = []
    for piece in _annotation_chunks(data):
        cols = _fast_block(piece)
        if cols is None:
            return None
        parts.append(cols)
    return parts[0] if len(parts) == 1 else _concat_columns(parts)


def _concat_columns(parts: list[Columns]) -> Columns:
    def shifted(key):
        out, base = [np.zeros(1, np.int64)], 0
        for c in parts:
            off = getattr(c, key)
            out.append(off[1:] + base)
            base += off[-1]
        return np.concatenate(out)

    return Columns(
        np.concatenate([c.frame for c in parts]), np.concatenate([c.category for c in parts]),
        np.concatenate([c.category_str for c in parts]), np.concatenate([c.score for c in parts]),
        np.concatenate([c.score_present for c in parts]),
        pa.concat_arrays([c.distance for c in parts]), pa.concat_arrays([c.instance_id for c in parts]),
        shifted("ann_offsets"), shifted("poly_offsets"), np.concatenate([c.xyz for c in parts]),
        [e for c in parts for e in c.extra], {})


def _fast_block(data: bytes) -> Columns | None:
    try:
        tb = pj.read_json(pa.BufferReader(data), read_options=pj.ReadOptions(block_size=max(len(data) + 1, 1 << 20)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if tb.num_rows != 1 or tb.column_names != ["annotations"]:
        return None
    col = tb.column("annotations").combine_chunks()
    if not pa.types.is_list(col.type) or not pa.types.is_struct(col.type.value_type) or col.null_count:
        return None
    anns = col.values
    names = [anns.type.field(i).name for i in range(anns.type.num_fields)]
    if any(n not in KNOWN_KEYS for n in names) or "segmentation" not in names:
        return None
    n = len(anns)
    fields = {nm: anns.field(nm) for nm in names}

    def num(name, required=True):
        if name not in fields:
            return np.full(n, np.nan)
        a = fields[name]
        if not (pa.types.is_integer(a.type) or pa.types.is_floating(a.type)):
            raise _Fallback
        return a.cast(pa.float64()).to_numpy(zero_copy_only=False)

    try:
        frame, category, score = num("metadata_frame_index"), num("category_id"), num("score")
        distance = fields["distance"].cast(pa.float64()) if "distance" in fields else pa.nulls(n, pa.float64())
        if "instance_id" in fields:
            iid = fields["instance_id"]
            if not pa.types.is_integer(iid.type):
                raise _Fallback
            instance_id = iid.cast(pa.int64())
        else:
            instance_id = pa.nulls(n, pa.int64())
    except _Fallback:
        return None
    seg = fields["segmentation"]
    t = seg.type
    if not (pa.types.is_list(t) and pa.types.is_list(t.value_type) and pa.types.is_list(t.value_type.value_type)):
        return None
    leaf_t = t.value_type.value_type.value_type
    if not (pa.types.is_integer(leaf_t) or pa.types.is_floating(leaf_t)) or seg.null_count:
        return None
    polys = seg.values
    pts = polys.values
    if polys.null_count or pts.null_count or pts.values.null_count:
        return None
    ann_offsets = _offsets(seg)
    poly_offsets = _offsets(polys)
    lengths = pc.list_value_length(pts).to_numpy(zero_copy_only=False)
    if lengths.size and (lengths != 3).any():
        return None  # general path reports the ragged triplet precisely
    leaf = pts.values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    point_offsets = _offsets(pts)
    leaf = leaf[point_offsets[0]: point_offsets[-1]] if len(point_offsets) else leaf[:0]
    # A null here is a missing key, an explicit null or a NaN token: the general path tells which.
    for key in ("metadata_frame_index", "category_id", "score"):
        if key in fields and fields[key].null_count:
            return None
    if "metadata_frame_index" not in fields or "category_id" not in fields:
        return None
    present = np.full(n, "score" in fields)
    return Columns(frame, category, np.zeros(n, bool), score, present, distance, instance_id,
                   ann_offsets, poly_offsets, leaf.reshape(-1, 3), [None] * n, {})


class _Fallback(Exception):
    pass


def _offsets(list_array: pa.ListArray) -> np.ndarray:
    off = list_array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    return off - off[0] if off.size else np.zeros(1, np.int64)


def _load_json(path: Path, data: bytes):
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    # The standard library accepts NaN/Infinity tokens, which we then report per record.
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        pos = getattr(e, "pos", -1)
        at_end = pos >= len(data.rstrip()) or str(e).startswith("Unterminated string")
        kind = "truncated JSON (the file ends early)" if at_end else "malformed JSON"
        raise InputError(path, kind, detail=str(e)) from None


def _as_number(v) -> float:
    if isinstance(v, bool) or v is None:
        return math.nan
    if isinstance(v, (int, float)):
        return float(v)
    return math.nan


def _general_columns(path: Path, data: bytes) -> Columns:
    doc = _load_json(path, data)
    if not isinstance(doc, dict) or "annotations" not in doc:
        raise InputError(path, 'not a DCASE file: expected an object with an "annotations" list')
    anns = doc["annotations"]
    if not isinstance(anns, list):
        raise InputError(path, '"annotations" is not a list')
    n = len(anns)
    frame = np.full(n, np.nan)
    category = np.full(n, np.nan)
    category_str = np.zeros(n, bool)
    score = np.full(n, np.nan)
    score_present = np.zeros(n, bool)
    distance: list = [None] * n
    instance_id: list = [None] * n
    extra: list = [None] * n
    missing: dict = {}
    ann_offsets = np.zeros(n + 1, np.int64)
    poly_lengths: list[int] = []
    blocks: list[np.ndarray] = []
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise InputError(path, "annotation is not an object", record=i)
        for key in ("metadata_frame_index", "category_id", "segmentation"):
            if key not in a and key not in missing:
                missing[key] = i
        f = a.get("metadata_frame_index")
        frame[i] = _as_number(f)
        c = a.get("category_id")
        if isinstance(c, str) and c.strip().lstrip("-").isdigit():
            category[i], category_str[i] = float(int(c)), True
        else:
            category[i] = _as_number(c)
            if c is not None and math.isnan(category[i]):
                raise InputError(path, f"category_id {c!r} is not an integer class id", record=i)
        if "score" in a:
            s = a["score"]
            score_present[i] = True
            score[i] = _as_number(s)
            if math.isnan(score[i]) and not (isinstance(s, float)):
                raise InputError(path, f"score {s!r} is not a number", record=i)
        d = a.get("distance")
        if d is not None:
            d = _as_number(d)
            if math.isnan(d):
                raise InputError(path, f"distance {a['distance']!r} is not a number", record=i)
        distance[i] = d
        iid = a.get("instance_id")
        if iid is not None and (isinstance(iid, bool) or not isinstance(iid, int)):
            raise InputError(path, f"instance_id {iid!r} is not an integer", record=i)
        instance_id[i] = iid
        others = {k: v for k, v in a.items() if k not in KNOWN_KEYS}
        if others:
            extra[i] = json.dumps(others, sort_keys=False, allow_nan=True)
        seg = a.get("segmentation", [])
        if not isinstance(seg, list):
            raise InputError(path, "segmentation is not a list of polygons", record=i)
        for j, poly in enumerate(seg):
            if not isinstance(poly, list):
                raise InputError(path, f"polygon {j} is not a list of [x, y, intensity] triplets", record=i)
            if not poly:
                poly_lengths.append(0)
                continue
            try:
                arr = np.asarray(poly, dtype=np.float64)
            except (ValueError, TypeError):
                arr = None
            if arr is None or arr.ndim != 2 or arr.shape[1] != 3:
                bad = [k for k, t in enumerate(poly) if not (isinstance(t, list) and len(t) == 3 and
                                                               all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in t))]
                raise InputError(path, f"polygon {j} is not an N x 3 array of numbers", record=i,
                                 detail=f"bad triplet indices {bad[:10]}")
            blocks.append(arr)
            poly_lengths.append(len(arr))
        ann_offsets[i + 1] = ann_offsets[i] + len(seg)
    poly_offsets = np.zeros(len(poly_lengths) + 1, np.int64)
    np.cumsum(poly_lengths, out=poly_offsets[1:])
    xyz = np.concatenate(blocks) if blocks else np.zeros((0, 3))
    return Columns(frame, category, category_str, score, score_present, pa.array(distance, pa.float64()),
                   pa.array(instance_id, pa.int64()), ann_offsets, poly_offsets, xyz, extra, missing)


def parse_columns(path: Path, data: bytes, *, fast: bool = True) -> Columns:
    cols = _fast_columns(data) if fast else None
    return cols if cols is not None else _general_columns(path, data)


# ----------------------------------------------------------------------------------------------
# validation
def validate(path: Path, cols: Columns, kind: str, *, drop_unknown_classes: bool = False) -> np.ndarray:
    """Check every rule; return the boolean mask of annotations to keep."""
    for key in ("metadata_frame_index", "category_id", "segmentation"):
        if key in cols.missing:
            raise InputError(path, f'missing key "{key}"', record=cols.missing[key])
    n = cols.n
    bad = np.flatnonzero(~np.isfinite(cols.frame) | (cols.frame < 0) | (cols.frame != np.floor(cols.frame)))
    if bad.size:
        raise InputError(path, f"metadata_frame_index {cols.frame[bad[0]]!r} is not a non-negative integer", record=int(bad[0]))
    bad = np.flatnonzero(~np.isfinite(cols.category) | (cols.category != np.floor(cols.category)))
    if bad.size:
        raise InputError(path, "category_id is not an integer", record=int(bad[0]))
    if kind == "pred":
        bad = np.flatnonzero(~cols.score_present)
        if bad.size:
            raise InputError(path, 'missing key "score"', record=int(bad[0]))
        bad = np.flatnonzero(~np.isfinite(cols.score))
        if bad.size:
            raise InputError(path, f"score is {cols.score[bad[0]]!r}; scores must be finite numbers", record=int(bad[0]))
    dist = cols.distance.to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(np.isinf(dist))
    if bad.size:
        raise InputError(path, "distance is infinite", record=int(bad[0]))
    keep = np.ones(n, bool)
    unknown = np.flatnonzero((cols.category < 0) | (cols.category >= N_CLASSES))
    if unknown.size:
        if not drop_unknown_classes:
            raise InputError(path, f"class id {int(cols.category[unknown[0]])} outside 0..{N_CLASSES - 1}",
                             record=int(unknown[0]), detail="pass --drop-unknown-classes to drop such annotations with a warning")
        warnings.warn(f"{path}: dropped {unknown.size} annotation(s) with class ids outside 0..{N_CLASSES - 1} "
                      f"(first: annotation {unknown[0]})", stacklevel=2)
        keep[unknown] = False
    xyz = cols.xyz
    if xyz.size:
        x, y, e = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        bad_pt = ~((x >= 0) & (x <= 360) & (y >= 0) & (y <= 180) & np.isfinite(e))
        if bad_pt.any():
            idx = np.flatnonzero(bad_pt)
            poly = np.searchsorted(cols.poly_offsets, idx[0], side="right") - 1
            ann = int(np.searchsorted(cols.ann_offsets, poly, side="right") - 1)
            in_poly = idx[(idx >= cols.poly_offsets[poly]) & (idx < cols.poly_offsets[poly + 1])] - cols.poly_offsets[poly]
            t = xyz[idx[0]]
            raise InputError(path, f"polygon {poly - cols.ann_offsets[ann]} has points outside the canvas "
                             "(x in [0, 360], y in [0, 180], finite intensity)", record=ann,
                             detail=f"triplet indices {in_poly[:10].tolist()}, first {t.tolist()}")
    return keep


# ----------------------------------------------------------------------------------------------
# files -> tables
def clip_name(path: Path) -> str:
    stem = path.stem
    for suffix in ("_inference", "_std"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


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

    Returns (table, sha256 of the file)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read file: {e.strerror}") from None
    if kind == "pred" and len(data) > MAX_FILE_BYTES:
        warnings.warn(f"{path}: {len(data) / 2**20:.1f} MiB is over the challenge's 20 MiB per-file limit; "
                      "calib export will refuse to write it as a submission file", stacklevel=2)
    digest = file_sha256(data)
    cols = parse_columns(path, data, fast=fast)
    del data  # the raw bytes are as large as the parsed columns: free them before building the table
    keep = validate(path, cols, kind, drop_unknown_classes=drop_unknown_classes)
    n = cols.n
    clip = clip_name(path)
    arrays = {
        "clip": pa.array([clip] * n, pa.string()),
        "frame": pa.array(cols.frame.astype(np.int64)),
        "class_id": pa.array(cols.category.astype(np.int64)),
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
    """Prediction files: each given file, and every ``*.json`` (not starting with '.') of each folder."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.glob("*.json") if not f.name.startswith(".")))
        elif p.exists():
            out.append(p)
        else:
            raise InputError(p, "no such file or folder")
    return out


def truth_files(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """GT files ``<seq>_std.json`` in ``root`` or one folder below it, with their split (sub-folder)."""
    root = Path(root)
    if root.is_file():
        return [(root, "")]
    if not root.is_dir():
        raise InputError(root, "no such GT folder")
    found = [(f, "") for f in sorted(root.glob("*_std.json"))]
    found += [(f, f.parent.name) for f in sorted(root.glob("*/*_std.json"))]
    if not found:
        raise InputError(root, "no <seq>_std.json ground-truth files here or one folder below")
    return found


def _progress(items, desc: str, show: bool | None):
    from tqdm.auto import tqdm

    show = (len(items) > 3) if show is None else show
    return tqdm(items, desc=desc, unit="file", disable=not show, leave=False)


def ingest_predictions(paths: Sequence[str | os.PathLike], system: str | None = None, *,
                       drop_unknown_classes: bool = False, progress: bool | None = None) -> tuple[pl.DataFrame, dict]:
    """Read prediction files/folders into one detections table. Returns (table, {file: sha256})."""
    files = prediction_files(paths)
    if not files:
        raise InputError(", ".join(map(str, paths)), "no prediction *.json files found")
    if system is None:
        first = Path(paths[0])
        system = first.name if first.is_dir() else first.parent.name
    clips = [clip_name(f) for f in files]
    dup = {c for c in clips if clips.count(c) > 1}
    if dup:
        raise InputError(files[0].parent, f"several files for clip(s) {sorted(dup)} (e.g. <seq>.json and <seq>_inference.json)")
    frames, sources = [], {}
    for f in _progress(files, "ingest", progress):
        df, digest = read_file(f, "pred", system=system, drop_unknown_classes=drop_unknown_classes)
        frames.append(df)
        sources[str(f)] = digest
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=DETECTIONS), sources


def ingest_truth(root: str | os.PathLike, *, drop_unknown_classes: bool = False,
                 progress: bool | None = None) -> tuple[pl.DataFrame, dict]:
    """Read a GT folder (split sub-folders allowed) into one truth table."""
    files = truth_files(root)
    frames, sources = [], {}
    for f, split in _progress(files, "ingest truth", progress):
        df, digest = read_file(f, "gt", split=split, drop_unknown_classes=drop_unknown_classes)
        frames.append(df)
        sources[str(f)] = digest
    return pl.concat(frames, how="vertical"), sources


# ----------------------------------------------------------------------------------------------
# tables -> files
def _annotation_dicts(df: pl.DataFrame, kind: str) -> list[dict]:
    """Rebuild the JSON annotations of one clip, numbers as float64/int exactly as read."""
    pts = df.get_column("points").to_arrow()
    pts = pts.combine_chunks() if isinstance(pts, pa.ChunkedArray) else pts
    ann_off = pts.offsets.to_numpy(zero_copy_only=False)
    polys = pts.values
    poly_off = polys.offsets.to_numpy(zero_copy_only=False)
    leaf = polys.values
    xyz = np.column_stack([leaf.field(c).to_numpy(zero_copy_only=False) for c in ("x", "y", "e")]).tolist()
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
    return orjson.dumps({"annotations": _annotation_dicts(df, kind)})


def export_table(df: pl.DataFrame, out_dir: str | os.PathLike, kind: str = "pred", *,
                 max_bytes: int | None = MAX_FILE_BYTES, progress: bool | None = None) -> list[Path]:
    """Write one ``<seq>.json`` per clip (GT: ``<split>/<seq>_std.json``).

    All files are staged in a temporary folder and moved into ``out_dir`` only when every clip
    serialized within ``max_bytes``, so a failure leaves nothing behind."""
    out_dir = Path(out_dir)
    if kind == "pred" and df.get_column("system").n_unique() > 1:
        raise InputError(out_dir, f"table holds several systems {sorted(df.get_column('system').unique().to_list())}; "
                         "export one system at a time (filter with --system)")
    order_col = "det_id" if kind == "pred" else "ann_id"
    clips = df.get_column("clip").unique().sort().to_list()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    written = []
    try:
        parts = df.sort(["clip", order_col], maintain_order=True).partition_by("clip", as_dict=True, maintain_order=True)
        for clip in _progress(clips, "export", progress):
            part = parts[(clip,)]
            data = dumps_clip(part, kind)
            if kind == "pred":
                rel = Path(f"{clip}.json")
                if max_bytes is not None and len(data) > max_bytes:
                    raise InputError(rel, f"would be {len(data) / 2**20:.2f} MiB, over the {max_bytes / 2**20:.0f} MiB "
                                     "per-file limit; coarsen the masks (emit stages / size guard) before exporting")
            else:
                split = part.get_column("split")[0] or ""
                rel = Path(split) / f"{clip}_std.json"
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / rel).write_bytes(data)
            written.append(rel)
        out_dir.mkdir(parents=True, exist_ok=True)
        for rel in written:
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, out_dir / rel)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [out_dir / r for r in written]


def load_annotations(path: str | os.PathLike) -> list[dict]:
    """The annotations of a DCASE JSON file as plain dicts (for tests and comparisons)."""
    return json.loads(Path(path).read_bytes())["annotations"]


def iter_clip_files(paths: Iterable[Path]):  # pragma: no cover - convenience
    for p in paths:
        yield clip_name(p), p
