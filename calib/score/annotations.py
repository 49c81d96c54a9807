"""Annotations as the official scorers read them: parsing, validation and the folder rules.

An :class:`Annotation` is one entry of a DCASE 2026 Task 3 JSON file: a frame, a class, a score
(NaN for ground truth) and its polygons, each an (N, 3) float64 array of x, y, intensity.
Validation follows the ``dcase2026`` protocol (the stricter one) for both protocols, so a bad file
is reported the same way whichever protocol scores it: the error names the file, the annotation
index and, for geometry, the offending triplet indices.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import orjson

N_CLASSES = 13
MAX_PRED_BYTES = 20 * 1024 * 1024  # dcase2026: a prediction file over 20 MiB is an error
PROTOCOLS = ("dcase2026", "dcase2026-coco")


class ScoreInputError(ValueError):
    """A prediction or ground-truth input the official scorer would reject."""


@dataclass(frozen=True, eq=False)
class Annotation:
    """One annotation of a clip file.

    ``index`` is the position of the annotation in its file (the det_id / ann_id), kept even when
    annotations are dropped, so rows can be traced back to the file."""

    frame: int
    class_id: int
    score: float
    polygons: tuple[np.ndarray, ...]
    distance: float | None = None
    index: int = 0
    instance_id: int | None = field(default=None)


def _fail(where: str, idx: int | None, msg: str) -> ScoreInputError:
    at = f"{where}: annotation {idx}: " if idx is not None else f"{where}: "
    return ScoreInputError(at + msg)


def _as_int(value, where: str, idx: int, key: str) -> int:
    """An int, or a string of digits (GT writes category_id so), or an integral float."""
    if isinstance(value, bool):
        raise _fail(where, idx, f"{key} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise _fail(where, idx, f"{key} must be an integer, got {value!r}")


def _polygon_array(poly, where: str, idx: int, p: int) -> np.ndarray | None:
    """One polygon as an N x 3 float64 array (ranges not checked yet: see :func:`_check_ranges`).
    Empty polygons are legal and skipped (None)."""
    if not isinstance(poly, list):
        raise _fail(where, idx, f"polygon {p} is not a list of [x, y, intensity] triplets")
    if len(poly) == 0:
        return None
    try:
        arr = np.asarray(poly, dtype=np.float64)
    except (ValueError, TypeError):
        bad = [i for i, t in enumerate(poly)
               if not isinstance(t, list) or len(t) != 3
               or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in t)]
        raise _fail(where, idx, f"polygon {p} is not N x 3 numbers: triplet(s) {bad[:20]} malformed") from None
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise _fail(where, idx, f"polygon {p} has shape {arr.shape}, expected (N, 3)")
    return arr


def _range_error(arr: np.ndarray, where: str, idx: int, p: int) -> ScoreInputError | None:
    """The error for a polygon with x outside [0, 360], y outside [0, 180] or a non-finite
    intensity, or None when it has none."""
    x, y, e = arr[:, 0], arr[:, 1], arr[:, 2]
    bad_x = np.flatnonzero(~((x >= 0) & (x <= 360)))
    bad_y = np.flatnonzero(~((y >= 0) & (y <= 180)))
    bad_e = np.flatnonzero(~np.isfinite(e))
    if not (bad_x.size or bad_y.size or bad_e.size):
        return None
    parts = []
    if bad_x.size:
        parts.append(f"x outside [0, 360] at triplet(s) {bad_x[:20].tolist()}")
    if bad_y.size:
        parts.append(f"y outside [0, 180] at triplet(s) {bad_y[:20].tolist()}")
    if bad_e.size:
        parts.append(f"non-finite intensity at triplet(s) {bad_e[:20].tolist()}")
    return _fail(where, idx, f"polygon {p}: " + "; ".join(parts))


def _check_ranges(found: list, where: str) -> None:
    """Raise the range error of the first bad polygon among found [(array, annotation, polygon)],
    in file order. One vectorized test over all of them; per-polygon work only on a failure."""
    if not found:
        return
    allp = np.concatenate([f[0] for f in found]) if len(found) > 1 else found[0][0]
    x, y, e = allp[:, 0], allp[:, 1], allp[:, 2]
    if ((x >= 0) & (x <= 360) & (y >= 0) & (y <= 180) & np.isfinite(e)).all():
        return
    for arr, idx, p in found:
        err = _range_error(arr, where, idx, p)
        if err is not None:
            raise err


def parse_annotations(data: bytes, where: str, kind: str) -> list[Annotation]:
    """Parse one clip file's bytes into validated annotations (classes not yet filtered)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        # Python's json also reads NaN / Infinity tokens: then the annotation holding them is named
        import json

        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            raise _fail(where, None, f"not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise _fail(where, None, 'expected an object {"annotations": [...]}')
    out = []
    found: list = []  # (array, annotation, polygon) of every polygon, ranges checked in one go
    try:
        _parse_into(doc["annotations"], where, kind, out, found)
    except ScoreInputError:
        _check_ranges(found, where)  # a bad polygon earlier in the file is the first error
        raise
    _check_ranges(found, where)
    return out


def _parse_into(anns, where: str, kind: str, out: list, found: list) -> None:
    """Validate and convert the annotations of a parsed file into out (polygon ranges excepted)."""
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise _fail(where, i, "is not an object")
        for key in ("metadata_frame_index", "category_id", "segmentation"):
            if key not in a:
                raise _fail(where, i, f"missing {key!r}")
        frame = _as_int(a["metadata_frame_index"], where, i, "metadata_frame_index")
        if frame < 0:
            raise _fail(where, i, f"negative metadata_frame_index {frame}")
        cls = _as_int(a["category_id"], where, i, "category_id")
        if kind == "pred":
            if "score" not in a:
                raise _fail(where, i, "missing 'score'")
            s = a["score"]
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
                raise _fail(where, i, f"score must be a finite number, got {s!r}")
            score = float(s)
        else:
            score = math.nan
        seg = a["segmentation"]
        if not isinstance(seg, list):
            raise _fail(where, i, "segmentation is not a list of polygons")
        polys = []
        for j, poly in enumerate(seg):
            arr = _polygon_array(poly, where, i, j)
            if arr is not None:
                polys.append(arr)
                found.append((arr, i, j))
        polys = tuple(polys)
        d = a.get("distance")
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float))):
            raise _fail(where, i, f"distance must be a number, got {d!r}")
        inst = a.get("instance_id")
        out.append(Annotation(frame=frame, class_id=cls, score=score, polygons=polys,
                              distance=None if d is None else float(d), index=i,
                              instance_id=inst if isinstance(inst, int) and not isinstance(inst, bool) else None))


def keep_scored_classes(anns: Iterable[Annotation]) -> list[Annotation]:
    """Both protocols ignore classes outside 0..12."""
    return [a for a in anns if 0 <= a.class_id < N_CLASSES]


# ---------------------------------------------------------------------------------------------
# folder rules


@dataclass
class ClipFiles:
    """The file pairs one protocol would score, in the order it scores them."""

    pairs: list[tuple[str, Path, Path]]  # (clip, prediction file, GT file)
    skipped: list[str]  # prediction files without GT (file names)
    gt_only: list[str]  # GT clips without a prediction file (not scored, as officially)


def _gt_index(gt_dir: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """clip -> GT file, looking in gt_dir and one folder below (first found in sorted order wins,
    files directly in gt_dir before those in sub-folders)."""
    if not gt_dir.is_dir():
        raise ScoreInputError(f"{gt_dir}: ground-truth folder not found")
    found: dict[str, Path] = {}
    folders = [gt_dir] + sorted(p for p in gt_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders:
        for f in sorted(folder.glob("*.json")):
            if f.name.startswith("."):
                continue
            for suffix in names:
                if f.name.endswith(suffix):
                    found.setdefault(f.name[: -len(suffix)], f)
                    break
    return found


def pair_files(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, protocol: str) -> ClipFiles:
    """Which prediction file is scored against which GT file, following the protocol's rules.

    ``dcase2026``: every ``*.json`` not starting with ``.`` in pred_dir is ``<seq>.json``; its GT is
    ``<seq>_std.json`` in gt_dir or one folder below. ``dcase2026-coco``: ``<seq>.json`` or
    ``<seq>_inference.json``; GT ``<seq>_std.json`` or ``<seq>.json``. Pairs come in sorted file
    name order (the order the official script walks them)."""
    check_protocol(protocol)
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise ScoreInputError(f"{pred_dir}: prediction folder not found")
    if protocol == "dcase2026":
        gt = _gt_index(gt_dir, ("_std.json",))
    else:
        std = _gt_index(gt_dir, ("_std.json",))
        plain = _gt_index(gt_dir, (".json",))
        gt = {**{k: v for k, v in plain.items() if not k.endswith("_std")}, **std}
    pairs, skipped, seen = [], [], set()
    for f in sorted(pred_dir.glob("*.json")):
        if f.name.startswith(".") or not f.is_file():
            continue
        seq = f.name[: -len(".json")]
        if protocol == "dcase2026-coco" and seq.endswith("_inference"):
            seq = seq[: -len("_inference")]
        if seq in gt and seq not in seen:
            pairs.append((seq, f, gt[seq]))
            seen.add(seq)
        else:
            skipped.append(f.name)
    gt_only = sorted(set(gt) - seen)
    return ClipFiles(pairs, skipped, gt_only)


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def read_bytes(path: Path, kind: str, protocol: str) -> bytes:
    if kind == "pred" and protocol == "dcase2026":
        size = path.stat().st_size
        if size > MAX_PRED_BYTES:
            raise ScoreInputError(f"{path}: prediction file is {size} bytes, over the 20 MiB limit of the dcase2026 protocol")
    return path.read_bytes()


def file_digest(data: bytes) -> str:
    """Content hash of a file (a cache key, not a security measure): SHA-1 runs about twice as
    fast as BLAKE2b on CPUs with SHA extensions, and every warm run hashes each GT file."""
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def load_file(path: str | os.PathLike, kind: str = "pred", protocol: str = "dcase2026") -> list[Annotation]:
    """One clip file -> validated annotations of the scored classes (0..12)."""
    path = Path(path)
    if kind not in ("pred", "gt"):
        raise ValueError(f"kind must be 'pred' or 'gt', got {kind!r}")
    return keep_scored_classes(parse_annotations(read_bytes(path, kind, protocol), str(path), kind))


def load_dir(path: str | os.PathLike, kind: str = "pred", protocol: str = "dcase2026") -> dict[str, list[Annotation]]:
    """A folder of clip files -> {clip: annotations}, following the protocol's file-name rules.

    Predictions: ``<seq>.json`` (and ``<seq>_inference.json`` for dcase2026-coco) directly in
    ``path``. GT: ``<seq>_std.json`` in ``path`` or one folder below (dcase2026-coco also accepts
    ``<seq>.json``). Clips come in sorted file-name order."""
    check_protocol(protocol)
    path = Path(path)
    if kind == "gt":
        names = ("_std.json",) if protocol == "dcase2026" else ("_std.json", ".json")
        index = _gt_index(path, names)
        if protocol == "dcase2026-coco":
            std = _gt_index(path, ("_std.json",))
            index = {**{k: v for k, v in index.items() if not k.endswith("_std")}, **std}
        files = sorted(index.items(), key=lambda kv: kv[1].name)
    elif kind == "pred":
        if not path.is_dir():
            raise ScoreInputError(f"{path}: prediction folder not found")
        files = []
        for f in sorted(path.glob("*.json")):
            if f.name.startswith("."):
                continue
            seq = f.name[: -len(".json")]
            if protocol == "dcase2026-coco" and seq.endswith("_inference"):
                seq = seq[: -len("_inference")]
            files.append((seq, f))
    else:
        raise ValueError(f"kind must be 'pred' or 'gt', got {kind!r}")
    return {clip: load_file(f, kind, protocol) for clip, f in files}
