"""The rules for DCASE 2026 Task 3 annotations: one module, used by every reader.

``calib ingest`` (:mod:`calib.io.dcase`), ``calib score`` (:mod:`calib.score.annotations`) and the
recipe inputs all parse a file with :func:`calib.io.jsonfile.parse_columns` and then call
:func:`validate` here, so a file is judged the same way whoever reads it. Tables handed to the
scorer are checked with the same point and score rules (:func:`points_outside_canvas`,
:func:`scores_not_finite`).

Errors (the message names the file and the annotation; the first problem in file order wins):

- not UTF-8, not JSON, truncated, nested too deeply, not ``{"annotations": [...]}`` (file level);
- an annotation that is not an object, or lacks ``metadata_frame_index``, ``category_id``,
  ``segmentation`` (predictions: ``score``);
- ``metadata_frame_index`` not a JSON integer in 0..MAX_FRAME: ``"2"``, ``1.5``, ``2**70`` are errors
  (an integral float such as ``3.0`` is read as 3);
- ``category_id`` not an integer: a string of digits is accepted (GT files write ``"3"``, and the
  official scripts read it with ``int()``), ``"one"`` and ``1.5`` are errors;
- ``score`` (predictions) not a finite JSON number: NaN, Infinity, ``"0.5"``, ``true``;
- ``segmentation`` not a list of polygons, a polygon not a list of ``[x, y, intensity]`` number
  triplets (strings such as ``"10"`` and booleans are not numbers), a point with x outside
  [0, 360] or y outside [0, 180], or a non-finite intensity;
- ``distance`` present and not a finite number; ``instance_id`` present and not an integer
  (``1.5``, ``"3"``); JSON null for either means "none".

Skipped by the official scorers, so calib skips them too but says so (a warning naming the file
and the first annotation):

- ``category_id`` outside 0..12: both official scripts ignore such annotations. Scoring skips them
  with an :class:`~calib.io.errors.InputWarning`; ``calib ingest`` refuses them unless
  ``--drop-unknown-classes`` (then they are dropped with the same kind of warning).

Accepted as the official scorers accept them (ingest reports the first):

- GT annotations that repeat an object (same clip, frame, class and ``instance_id``: the label
  generator writes one annotation per contour, so an object across the 0/360 seam appears twice);
  each counts as a GT, as officially. :func:`repeated_objects` finds them.
- empty polygons and empty annotation lists (a clip with nothing in it is still a clip).

Sizes: a prediction file over MAX_FILE_BYTES (the challenge's 20 MiB) is an error for the
``dcase2026`` scorer, a warning on ingest and refused by ``calib export``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl

from calib.constants import N_CLASSES
from calib.io.errors import InputError, InputWarning
from calib.io.jsonfile import REQUIRED_KEYS, Columns

#: the largest frame index accepted (10 frames per second: almost 7 years of audio)
MAX_FRAME = 2**31 - 1
UNKNOWN_CLASS_POLICIES = ("error", "drop", "skip")


def points_outside_canvas(xyz: np.ndarray) -> np.ndarray:
    """Bool per point: x outside [0, 360], y outside [0, 180] or a non-finite intensity."""
    x, y, e = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    return ~((x >= 0) & (x <= 360) & (y >= 0) & (y <= 180) & np.isfinite(e))


def scores_not_finite(scores: np.ndarray) -> np.ndarray:
    return ~np.isfinite(scores)


def _first(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def _canvas_problem(cols: Columns):
    """(annotation, message, detail) of the first point off the canvas, or None."""
    if not cols.xyz.size:
        return None
    bad = points_outside_canvas(cols.xyz)
    p0 = _first(bad)
    if p0 is None:
        return None
    poly = int(np.searchsorted(cols.poly_offsets, p0, side="right") - 1)
    ann = int(np.searchsorted(cols.ann_offsets, poly, side="right") - 1)
    lo, hi = cols.poly_offsets[poly], cols.poly_offsets[poly + 1]
    pts = cols.xyz[lo:hi]
    x, y, e = pts[:, 0], pts[:, 1], pts[:, 2]
    parts = []
    for what, mask in (("x outside [0, 360]", ~((x >= 0) & (x <= 360))), ("y outside [0, 180]", ~((y >= 0) & (y <= 180))),
                       ("non-finite intensity", ~np.isfinite(e))):
        idx = np.flatnonzero(mask)
        if idx.size:
            parts.append(f"{what} at triplet(s) {idx[:20].tolist()}")
    return ann, f"polygon {poly - cols.ann_offsets[ann]} has points outside the canvas: " + "; ".join(parts), \
        f"first {cols.xyz[p0].tolist()}"


def _shown(v) -> str:
    s = repr(v.item() if isinstance(v, np.generic) else v)
    return s if len(s) <= 60 else s[:57] + "..."


def validate(path: str | Path, cols: Columns, kind: str, *, unknown_classes: str = "error") -> np.ndarray:
    """Apply every rule to one file's columns; return the boolean mask of annotations to keep.

    ``kind``: "pred" (a score is required) or "gt". ``unknown_classes``: what a class id outside
    0..12 does: "error", "drop" (ingest's ``--drop-unknown-classes``: dropped with a warning) or
    "skip" (scoring: skipped with a warning, as the official scorers skip them)."""
    if kind not in ("pred", "gt"):
        raise ValueError(f"kind must be 'pred' or 'gt', got {kind!r}")
    if unknown_classes not in UNKNOWN_CLASS_POLICIES:
        raise ValueError(f"unknown_classes must be one of {UNKNOWN_CLASS_POLICIES}, got {unknown_classes!r}")
    problems: list[tuple[int, str, str | None]] = []  # (annotation, message, detail): the first one is raised

    def add(i, message, detail=None):
        if i is not None:
            problems.append((int(i), message, detail))

    add(cols.not_object, "annotation is not an object")
    for key in REQUIRED_KEYS + (("score",) if kind == "pred" else ()):
        if key == "score":
            i = _first(~cols.score_present)
        else:
            i = cols.missing.get(key)
        add(i, f'missing key "{key}"')
    facts = cols.not_number
    if "metadata_frame_index" in facts:
        i, v = facts["metadata_frame_index"]
        add(i, f"metadata_frame_index {_shown(v)} is not an integer frame index (a JSON number 0..{MAX_FRAME})")
    f = cols.frame
    with np.errstate(invalid="ignore"):
        i = _first(~np.isnan(f) & ~((f >= 0) & (f <= MAX_FRAME) & (f == np.floor(f))))
    if i is not None:
        add(i, f"metadata_frame_index {_shown(f[i])} is not an integer frame index in 0..{MAX_FRAME}")
    if "category_id" in facts:
        i, v = facts["category_id"]
        add(i, f"category_id {_shown(v)} is not an integer class id")
    c = cols.category
    i = _first(~np.isnan(c) & ~(np.isfinite(c) & (c == np.floor(c))))
    if i is not None:
        add(i, f"category_id {_shown(c[i])} is not an integer class id")
    if kind == "pred":
        if "score" in facts:
            i, v = facts["score"]
            add(i, f"score is {_shown(v)}; scores must be finite numbers")
        i = _first(cols.score_present & scores_not_finite(cols.score))
        if i is not None and not ("score" in facts and facts["score"][0] == i):
            add(i, f"score is {_shown(cols.score[i])}; scores must be finite numbers")
    if "distance" in facts:
        i, v = facts["distance"]
        add(i, f"distance {_shown(v)} is not a number (cm, or null)")
    dist = cols.distance.to_numpy(zero_copy_only=False)
    add(_first(np.isinf(dist)), "distance is infinite")
    if "instance_id" in facts:
        i, v = facts["instance_id"]
        add(i, f"instance_id {_shown(v)} is not an integer (or null)")
    if cols.bad_segmentation is not None:
        i, j, reason, bad = cols.bad_segmentation
        add(i, reason if j is None else f"polygon {j} {reason}",
            None if bad is None else f"bad triplet indices {bad[:10]}")
    canvas = _canvas_problem(cols)
    if canvas is not None:
        add(*canvas)
    if problems:
        i, message, detail = min(problems, key=lambda p: p[0])
        raise InputError(path, message, record=i, detail=detail)

    keep = np.ones(cols.n, bool)
    unknown = np.flatnonzero((c < 0) | (c >= N_CLASSES))
    if unknown.size:
        first = f"first: annotation {unknown[0]}, class {int(c[unknown[0]])}"
        if unknown_classes == "error":
            raise InputError(path, f"class id {int(c[unknown[0]])} outside 0..{N_CLASSES - 1}", record=int(unknown[0]),
                             detail="pass --drop-unknown-classes to drop such annotations with a warning")
        if unknown_classes == "drop":
            msg = f"{path}: dropped {unknown.size} annotation(s) with class ids outside 0..{N_CLASSES - 1} ({first})"
        else:
            msg = (f"{path}: skipped {unknown.size} annotation(s) with class ids outside 0..{N_CLASSES - 1}, "
                   f"as the official scorers do ({first})")
        warnings.warn(msg, InputWarning, stacklevel=2)
        keep[unknown] = False
    return keep


def repeated_objects(truth: pl.DataFrame) -> pl.DataFrame:
    """GT rows that repeat an object: same clip, frame, class and (non-null) instance_id.

    The official label generator writes one annotation per contour, so an object straddling the
    0/360 seam appears twice; both official scorers count each as a GT. Returns the repeated
    (clip, frame, class_id, instance_id) keys with their row count ``n``, sorted."""
    keys = ["clip", "frame", "class_id", "instance_id"]
    if truth.height == 0:
        return pl.DataFrame(schema={**{k: truth.schema[k] for k in keys}, "n": pl.UInt32})
    return (truth.select(keys).filter(pl.col("instance_id").is_not_null())  # keys only: no copy of the points
            .group_by(keys).agg(pl.len().alias("n"))
            .filter(pl.col("n") > 1).sort(keys))
