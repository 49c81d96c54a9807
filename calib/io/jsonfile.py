"""DCASE 2026 Task 3 JSON bytes -> :class:`Columns`: what a file says, before any rule is applied.

A file is ``{"annotations": [...]}`` (other top-level keys are allowed and ignored); an annotation
has ``metadata_frame_index``, ``category_id`` (int; in GT sometimes a string of digits),
``segmentation`` (a list of polygons, each a list of ``[x, y, intensity]`` triplets), predictions
``score``, optionally ``instance_id``, ``distance`` and keys we do not model (kept verbatim as JSON
in ``extra``). Files may be written compactly or with ``indent=2``.

Two paths give the same :class:`Columns`: a columnar fast path (pyarrow's JSON reader, no Python
object per number, so a 100 MB dense file costs about one ``json.load`` and a fraction of its
memory) for files whose every value has the plain type, and a general path (orjson, then the
standard library for files with NaN tokens) for everything else. Parsing records facts only (a
value that is not a JSON number, a polygon that is not N x 3 numbers, a missing key); what is an
error, what is skipped with a warning and what is accepted is decided in one place,
:mod:`calib.io.validate`, for every reader (ingest, score, recipes). Only a file that is not a
JSON object with an ``"annotations"`` list at all fails here.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from calib.io.errors import InputError

KNOWN_KEYS = ("metadata_frame_index", "instance_id", "category_id", "score", "segmentation", "distance")
REQUIRED_KEYS = ("metadata_frame_index", "category_id", "segmentation")
#: nesting the fast path hands to pyarrow at most (a DCASE file nests 6 deep; pyarrow's reader
#: recurses and crashes the process on files nested about 100,000 deep): deeper files go to the
#: general path, whose parsers stop at about 1,000 levels with an error
FAST_MAX_DEPTH = 64
_INT64 = 2**63


@dataclass
class Columns:
    """One file's annotations in columnar form: the values as written, before validation.

    Numbers are float64 with NaN where the value is missing or not a JSON number; the first such
    value of each key is kept in ``not_number`` (``{key: (annotation index, value)}``) so the
    validator can quote it."""

    frame: np.ndarray  # float64
    category: np.ndarray  # float64 (a string of digits read as its number, flagged in category_str)
    category_str: np.ndarray  # bool: category_id was a string of digits
    score: np.ndarray  # float64
    score_present: np.ndarray  # bool: the key was there
    distance: pa.Array  # float64 with nulls (null: missing or JSON null)
    instance_id: pa.Array  # int64 with nulls (null: missing, JSON null, or not an int64 integer)
    ann_offsets: np.ndarray  # polygons of annotation i: ann_offsets[i]:ann_offsets[i+1]
    poly_offsets: np.ndarray  # points of polygon j: poly_offsets[j]:poly_offsets[j+1]
    xyz: np.ndarray  # (n_points, 3) float64
    extra: list  # JSON string or None per annotation
    missing: dict = field(default_factory=dict)  # required key -> first annotation index missing it
    not_number: dict = field(default_factory=dict)  # key -> (first annotation index, value)
    not_object: int | None = None  # first annotation that is not a JSON object
    bad_segmentation: tuple | None = None  # (annotation, polygon or None, reason, triplet indices)

    @property
    def n(self) -> int:
        return len(self.frame)


# ----------------------------------------------------------------------------------------------
# nesting depth: guards pyarrow's recursive reader
_BRACKETS_ONLY = bytes(c for c in range(256) if c not in b"[]{}")
_DEPTH_STEP = np.zeros(256, np.int8)
_DEPTH_STEP[list(b"[{")] = 1
_DEPTH_STEP[list(b"]}")] = -1


def bracket_depth(data: bytes) -> int:
    """Deepest bracket nesting of ``data`` (brackets inside strings counted too: an over-estimate
    only ever sends a file to the general path). One C pass drops every other byte; then a
    cumulative sum over the brackets alone."""
    brackets = np.frombuffer(data.translate(None, _BRACKETS_ONLY), np.uint8)
    deepest, depth, step = 0, 0, 1 << 20  # in pieces: the running sums stay a few MB whatever the file
    for start in range(0, brackets.size, step):
        run = np.cumsum(_DEPTH_STEP[brackets[start:start + step]], dtype=np.int32)
        deepest = max(deepest, depth + int(run.max()))
        depth += int(run[-1])
    return deepest


# ----------------------------------------------------------------------------------------------
# fast path
_CHUNK_BYTES = 8 << 20
_HEAD = re.compile(rb'\s*\{\s*"annotations"\s*:\s*\[')
#: a class id written as a string (GT files do so)
_STRING_CLASS = re.compile(rb'"category_id"\s*:\s*"')
#: ... and as a short string of ASCII digits, which the fast path reads (any other string, such as
#: " 3" or "x", makes pyarrow's column mixed, and the file goes to the general path)
_DIGITS_CLASS = re.compile(rb'("category_id"\s*:\s*)"0*([0-9]{1,6})"')
#: a class id written as a number with a fraction or an exponent (never in a real file: the general
#: path reads such files, so that a digit string's mark below cannot be mistaken for one)
_FRACTIONAL_CLASS = re.compile(rb'"category_id"\s*:\s*-?[0-9]+[.eE]')
_STRING_MARK = 0.5  # "12" is parsed as the number 12.5: integer part the class, the half the flag


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
    """Columnar parse with pyarrow, in pieces; None when the file needs the general path.

    Class ids written as strings of digits (GT files do so) are read here too: each ``"12"`` is
    rewritten as the number ``12.5`` before parsing (the mark :data:`_STRING_MARK`; numbers with a
    fraction as class ids go to the general path, so no real number carries it) and turned back
    into 12 with its ``category_str`` flag after: the same columns as the general path gives,
    without a Python object per number (a 36 MB GT file: ~0.5 s instead of ~4 s, and a fraction
    of the memory)."""
    if bracket_depth(data) > FAST_MAX_DEPTH:
        return None
    marked = _STRING_CLASS.search(data) is not None
    if marked:
        if _FRACTIONAL_CLASS.search(data):
            return None
        data = _DIGITS_CLASS.sub(rb"\1\2.5", data)
    parts = []
    for piece in _annotation_chunks(data):
        cols = _fast_block(piece)
        if cols is None:
            return None
        parts.append(cols)
    cols = parts[0] if len(parts) == 1 else _concat_columns(parts)
    if marked:
        whole = np.floor(cols.category)
        cols.category_str = (cols.category - whole) == _STRING_MARK
        cols.category = np.where(cols.category_str, whole, cols.category)
    return cols


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
        [e for c in parts for e in c.extra])


class _Fallback(Exception):
    pass


def _is_number_type(t) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _fast_block(data: bytes) -> Columns | None:
    try:
        tb = pj.read_json(pa.BufferReader(data), read_options=pj.ReadOptions(block_size=max(len(data) + 1, 1 << 20)),
                          parse_options=pj.ParseOptions(newlines_in_values=True))
        names_ok = tb.num_rows == 1 and "annotations" in tb.column_names
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    if not names_ok:
        return None
    col = tb.column("annotations").combine_chunks()
    if not pa.types.is_list(col.type) or not pa.types.is_struct(col.type.value_type) or col.null_count:
        return None
    anns = col.values
    try:
        names = [anns.type.field(i).name for i in range(anns.type.num_fields)]
    except UnicodeDecodeError:
        return None
    if any(n not in KNOWN_KEYS for n in names) or any(k not in names for k in REQUIRED_KEYS):
        return None
    n = len(anns)
    fields = {nm: anns.field(nm) for nm in names}

    def num(name):
        if name not in fields:
            return np.full(n, np.nan)
        a = fields[name]
        # a null here is a missing key, an explicit null or a NaN token: the general path tells which
        if not _is_number_type(a.type) or a.null_count:
            raise _Fallback
        return a.cast(pa.float64()).to_numpy(zero_copy_only=False)

    try:
        frame, category, score = num("metadata_frame_index"), num("category_id"), num("score")
        distance = pa.nulls(n, pa.float64())
        if "distance" in fields:
            d = fields["distance"]
            if not (_is_number_type(d.type) or pa.types.is_null(d.type)):
                raise _Fallback
            distance = d.cast(pa.float64())
        instance_id = pa.nulls(n, pa.int64())
        if "instance_id" in fields:
            iid = fields["instance_id"]
            if not (pa.types.is_integer(iid.type) or pa.types.is_null(iid.type)):
                raise _Fallback  # 1.5, "3", true: the general path names it
            instance_id = iid.cast(pa.int64())
    except (_Fallback, pa.ArrowInvalid):
        return None
    seg = fields["segmentation"]
    t = seg.type
    if not (pa.types.is_list(t) and pa.types.is_list(t.value_type) and pa.types.is_list(t.value_type.value_type)):
        return None
    if not _is_number_type(t.value_type.value_type.value_type) or seg.null_count:
        return None
    polys = seg.values
    pts = polys.values
    if polys.null_count or pts.null_count or pts.values.null_count:
        return None
    lengths = pc.list_value_length(pts).to_numpy(zero_copy_only=False)
    if lengths.size and (lengths != 3).any():
        return None  # the general path reports the ragged triplet precisely
    ann_offsets = _offsets(seg)
    poly_offsets = _offsets(polys)
    leaf = pts.values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    point_offsets = _offsets(pts)
    leaf = leaf[point_offsets[0]: point_offsets[-1]] if len(point_offsets) else leaf[:0]
    present = np.full(n, "score" in fields)
    return Columns(frame, category, np.zeros(n, bool), score, present, distance, instance_id,
                   ann_offsets, poly_offsets, leaf.reshape(-1, 3), [None] * n)


def _offsets(list_array: pa.ListArray) -> np.ndarray:
    off = list_array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    return off - off[0] if off.size else np.zeros(1, np.int64)


# ----------------------------------------------------------------------------------------------
# general path
def load_json(path, data: bytes):
    """The parsed document; an :class:`InputError` naming the file when it is not JSON text."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, "not UTF-8 text (JSON files are UTF-8)",
                         detail=f"byte 0x{data[e.start]:02x} at offset {e.start}") from None
    # The standard library accepts NaN/Infinity tokens (which the validator then reports per
    # annotation) and integers beyond 64 bits.
    try:
        return json.loads(text)
    except RecursionError:
        raise InputError(path, "JSON nested too deeply (more than about 1,000 levels)") from None
    except json.JSONDecodeError as e:
        at_end = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")
        kind = "truncated JSON (the file ends early)" if at_end else "malformed JSON"
        raise InputError(path, kind, detail=str(e)) from None


def _number(v) -> float:
    """float(v) for a JSON number, NaN for anything else (bool, string, null, list, object)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    try:
        return float(v)
    except OverflowError:  # an integer beyond float range: surely not a frame, class or score
        return math.inf if v > 0 else -math.inf


def _first(facts: dict, key: str, i: int, value) -> None:
    if key not in facts:
        facts[key] = (i, value)


def _polygon(poly, strict: bool):
    """(N x 3 float64 array, None) for a polygon of number triplets, else (None, bad triplet
    indices; None when the polygon is not even a list). ``strict`` also refuses strings of digits
    and booleans, which a float64 conversion would turn into numbers."""
    if not isinstance(poly, list):
        return None, None
    if not poly:
        return np.zeros((0, 3)), None
    try:
        arr = np.asarray(poly) if strict else np.asarray(poly, dtype=np.float64)
    except (ValueError, TypeError):
        arr = None
    ok = arr is not None and arr.ndim == 2 and arr.shape[1] == 3 and arr.dtype.kind in "iuf"
    if ok and strict:
        ok = not any(isinstance(v, bool) for t in poly for v in t)
    if ok:
        return arr.astype(np.float64, copy=False), None
    bad = [k for k, t in enumerate(poly) if not (isinstance(t, list) and len(t) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in t))]
    return None, bad


def _bad_polygon(i: int, j, bad):
    reason = "is not a list of [x, y, intensity] triplets" if bad is None else "is not an N x 3 array of numbers"
    return (i, j, reason, bad)


def _file_order(bad_segmentation) -> tuple[int, int]:
    i, j = bad_segmentation[:2]
    return i, -1 if j is None else j


def _first_non_number_polygon(anns: list):
    """The first polygon holding a string or a boolean, by the strict test (a slow pass, run only
    when the file has strings or booleans beyond its keys and string class ids)."""
    for i, a in enumerate(anns):
        seg = a.get("segmentation") if isinstance(a, dict) else None
        for j, poly in enumerate(seg if isinstance(seg, list) else ()):
            arr, bad = _polygon(poly, strict=True)
            if arr is None:
                return _bad_polygon(i, j, bad)
    return None


def _general_columns(path, data: bytes) -> Columns:
    doc = load_json(path, data)
    if not isinstance(doc, dict) or "annotations" not in doc:
        raise InputError(path, 'not a DCASE file: expected an object with an "annotations" list')
    anns = doc["annotations"]
    if not isinstance(anns, list):
        raise InputError(path, '"annotations" is not a list')
    # Polygons are converted straight to float64, which would read "10" as 10.0 and true as 1.0.
    # Every string of a plain file is a key or a string class id (quotes counted below); any other
    # string or a true/false token sends the polygons through the strict test after the loop.
    quotes = 2 * len(doc)
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
    not_number: dict = {}
    not_object = None
    bad_seg = None
    ann_offsets = np.zeros(n + 1, np.int64)
    poly_lengths: list[int] = []
    blocks: list[np.ndarray] = []
    for i, a in enumerate(anns):
        ann_offsets[i + 1] = ann_offsets[i]
        if not isinstance(a, dict):
            not_object = i if not_object is None else not_object
            continue
        quotes += 2 * len(a)
        for key in REQUIRED_KEYS:
            if key not in a and key not in missing:
                missing[key] = i
        f = a.get("metadata_frame_index")
        frame[i] = _number(f)
        if "metadata_frame_index" in a and math.isnan(frame[i]):  # a string, null, list, ...
            _first(not_number, "metadata_frame_index", i, f)
        c = a.get("category_id")
        if isinstance(c, str) and c.strip().lstrip("-").isdigit():
            category[i], category_str[i] = float(int(c)), True
            quotes += 2
        else:
            category[i] = _number(c)
            if "category_id" in a and math.isnan(category[i]):
                _first(not_number, "category_id", i, c)
        if "score" in a:
            s = a["score"]
            score_present[i] = True
            score[i] = _number(s)
            if math.isnan(score[i]) and not isinstance(s, float):
                _first(not_number, "score", i, s)
        d = a.get("distance")
        if d is not None:
            distance[i] = _number(d)
            if math.isnan(distance[i]):
                distance[i] = None
                _first(not_number, "distance", i, d)
        iid = a.get("instance_id")
        if iid is not None:
            if isinstance(iid, int) and not isinstance(iid, bool) and -_INT64 <= iid < _INT64:
                instance_id[i] = iid
            else:
                _first(not_number, "instance_id", i, iid)
        others = {k: v for k, v in a.items() if k not in KNOWN_KEYS}
        if others:
            extra[i] = json.dumps(others, sort_keys=False, allow_nan=True)
        seg = a.get("segmentation", [])
        if not isinstance(seg, list):
            if bad_seg is None:
                bad_seg = (i, None, "segmentation is not a list of polygons", None)
            continue
        for j, poly in enumerate(seg):
            arr, bad = _polygon(poly, strict=False)
            if arr is None:
                if bad_seg is None:
                    bad_seg = _bad_polygon(i, j, bad)
                arr = np.zeros((0, 3))  # keep the offsets consistent; the validator reports it
            blocks.append(arr)
            poly_lengths.append(len(arr))
        ann_offsets[i + 1] = ann_offsets[i] + len(seg)
    if data.count(b'"') != quotes or b"true" in data or b"false" in data:
        strict = _first_non_number_polygon(anns)
        if strict is not None and (bad_seg is None or _file_order(strict) < _file_order(bad_seg)):
            bad_seg = strict
    poly_offsets = np.zeros(len(poly_lengths) + 1, np.int64)
    np.cumsum(poly_lengths, out=poly_offsets[1:])
    xyz = np.concatenate(blocks) if blocks else np.zeros((0, 3))
    return Columns(frame, category, category_str, score, score_present, pa.array(distance, pa.float64()),
                   pa.array(instance_id, pa.int64()), ann_offsets, poly_offsets, xyz, extra, missing,
                   not_number, not_object, bad_seg)


def parse_columns(path: str | Path, data: bytes, *, fast: bool = True) -> Columns:
    """The columns of one file's bytes (``path`` only names the file in errors)."""
    cols = _fast_columns(data) if fast else None
    return cols if cols is not None else _general_columns(path, data)
