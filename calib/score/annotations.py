"""Annotations as the official scorers read them: parsing, validation and the folder rules.

An :class:`Annotation` is one entry of a DCASE 2026 Task 3 JSON file: a frame, a class, a score
(NaN for ground truth) and its polygons, each an (N, 3) float64 array of x, y, intensity.
Files are parsed by :mod:`calib.io.jsonfile` and judged by :mod:`calib.io.validate`, the rules
``calib ingest`` applies too, for both protocols: a bad file is an error naming the file, the
annotation and, for geometry, the offending triplets; a class outside 0..12 is skipped as the
official scorers skip it, with a warning naming the file and annotation. Which files are scored
against which is :mod:`calib.io.discover`'s one naming rule.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from calib.constants import MAX_FILE_BYTES, N_CLASSES
from calib.io.discover import ClipFiles, check_protocol, pair_files, prediction_index, truth_index  # noqa: F401
from calib.io.discover import read_file_bytes
from calib.io.errors import InputError
from calib.io.jsonfile import parse_columns
from calib.io.validate import validate

#: one error type for bad input, whichever command reads it (kept under its old name)
ScoreInputError = InputError


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


def parse_annotations(data: bytes, where: str, kind: str) -> list[Annotation]:
    """Parse one clip file's bytes into validated annotations of the scored classes (0..12; any
    other class is skipped with a warning, as the official scorers skip it)."""
    cols = parse_columns(where, data)
    keep = validate(where, cols, kind, unknown_classes="skip")
    frames = cols.frame.astype(np.int64).tolist()
    classes = np.where(keep, cols.category, 0).astype(np.int64).tolist()  # skipped ones may not fit int64
    scores = cols.score.tolist() if kind == "pred" else [np.nan] * cols.n
    dist = cols.distance.to_pylist()
    iids = cols.instance_id.to_pylist()
    xyz, ao, po = cols.xyz, cols.ann_offsets.tolist(), cols.poly_offsets.tolist()
    out = []
    for i in np.flatnonzero(keep).tolist():
        # empty polygons are legal and draw nothing: not kept
        polygons = tuple(xyz[po[j]: po[j + 1]] for j in range(ao[i], ao[i + 1]) if po[j + 1] > po[j])
        out.append(Annotation(frame=frames[i], class_id=classes[i], score=float(scores[i]), polygons=polygons,
                              distance=dist[i], index=i, instance_id=iids[i]))
    return out


def keep_scored_classes(anns: Iterable[Annotation]) -> list[Annotation]:
    """Both protocols ignore classes outside 0..12."""
    return [a for a in anns if 0 <= a.class_id < N_CLASSES]


def read_bytes(path: Path, kind: str, protocol: str) -> bytes:
    data = read_file_bytes(Path(path))
    if kind == "pred" and protocol == "dcase2026" and len(data) > MAX_FILE_BYTES:
        raise InputError(path, f"prediction file is {len(data)} bytes, over the 20 MiB limit of the dcase2026 protocol")
    return data


def file_digest(data: bytes) -> str:
    """Content hash of a file (a cache key, not a security measure): SHA-1 runs about twice as
    fast as BLAKE2b on CPUs with SHA extensions, and every warm run hashes each GT file."""
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def load_file(path: str | os.PathLike, kind: str = "pred", protocol: str = "dcase2026") -> list[Annotation]:
    """One clip file -> validated annotations of the scored classes (0..12)."""
    path = Path(path)
    if kind not in ("pred", "gt"):
        raise ValueError(f"kind must be 'pred' or 'gt', got {kind!r}")
    return parse_annotations(read_bytes(path, kind, protocol), str(path), kind)


def load_dir(path: str | os.PathLike, kind: str = "pred", protocol: str = "dcase2026") -> dict[str, list[Annotation]]:
    """A folder of clip files -> {clip: annotations}, by the one naming rule of
    :mod:`calib.io.discover` (predictions ``<seq>.json`` or ``<seq>_inference.json``; GT
    ``<seq>_std.json`` here or one folder below). Clips come in sorted file-name order."""
    check_protocol(protocol)
    if kind == "gt":
        files = [(clip, f) for clip, (f, _) in truth_index(path, protocol).items()]
    elif kind == "pred":
        if not Path(path).is_dir():
            raise InputError(path, "prediction folder not found")
        files = list(prediction_index(path).items())
    else:
        raise ValueError(f"kind must be 'pred' or 'gt', got {kind!r}")
    return {clip: load_file(f, kind, protocol) for clip, f in files}
