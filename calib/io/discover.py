"""Which files are which clips: the one naming rule for prediction and ground-truth files.

Every command that reads DCASE JSON folders (``calib ingest``, ``calib score`` for both protocols,
recipe inputs) finds its files here.

- **Predictions**: every ``*.json`` directly in the folder (names starting with ``.`` ignored); when
  the folder holds none but its sub-folders do (a dataset root with split folders such as
  ``dev-test-sony/``), those. The clip is the file name less ``.json`` and less a trailing
  ``_inference`` (the official baseline and SAID write ``<seq>_inference.json``) or ``_std``.
- **Ground truth**: ``<seq>_std.json`` in the GT folder or one folder below it (split folders), as
  the official 2026-06-30 script looks; the ``dcase2026-coco`` protocol (2026-04-02) also takes
  ``<seq>.json`` for a clip that has no ``<seq>_std.json``.
- Two files naming one clip (``a.json`` and ``a_inference.json``; ``a_std.json`` in two split
  folders) are an error naming both. A clip name must pass :mod:`calib.io.clipnames`. A file must
  be a readable regular file (symbolic links to one are fine): a folder named ``x.json``, a broken
  link or a link loop is an error naming it.
- Scoring pairs the two sides (:func:`pair_files`): a prediction file without GT is skipped and a GT
  clip without a prediction file is not scored (both as officially, both listed); when no
  prediction file has GT at all, that is an error saying what was looked for.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from calib.constants import PROTOCOLS
from calib.io.clipnames import check_clip_name
from calib.io.errors import InputError

PREDICTION_SUFFIXES = ("_inference", "_std")  # stripped from a prediction file's stem
GT_SUFFIX = "_std.json"
PREDICTION_RULE = "<seq>.json or <seq>_inference.json"


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def check_regular_file(path: Path) -> Path:
    """``path`` when it is (a link to) a regular file, else an :class:`InputError` saying what it is."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(path, "symbolic link loop: the link never reaches a file") from None
        if e.errno == errno.ENOENT and os.path.islink(path):
            raise InputError(path, f"broken symbolic link (to {os.readlink(path)!r})") from None
        raise InputError(path, f"cannot read: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(path, "is a folder, not a JSON file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(path, "is not a regular file")
    return path


def read_file_bytes(path: Path) -> bytes:
    """A file's bytes; any OS error becomes an :class:`InputError` naming the file."""
    check_regular_file(path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror}") from None


def prediction_clip(path: Path) -> str:
    """The clip a prediction file names: ``a.json``, ``a_inference.json`` -> ``a``."""
    stem = Path(path).name[: -len(".json")] if Path(path).name.endswith(".json") else Path(path).stem
    for suffix in PREDICTION_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _visible(folder: Path, pattern: str) -> list[Path]:
    return sorted(f for f in folder.glob(pattern) if not f.name.startswith("."))


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())


def _folder_predictions(folder: Path) -> list[Path]:
    found = _visible(folder, "*.json")
    if not found:  # a dataset root: its split folders
        found = [f for sub in _subfolders(folder) for f in _visible(sub, "*.json")]
    return found


def prediction_index(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> dict[str, Path]:
    """{clip: file} of the prediction files at ``paths`` (files, or folders read by the rule above),
    in file-name order. Errors: a path that does not exist, an unreadable or non-regular file, an
    unsafe clip name, two files naming one clip."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += _folder_predictions(p)
        elif p.exists() or p.is_symlink():
            files.append(p)
        else:
            raise InputError(p, "no such file or folder")
    index: dict[str, Path] = {}
    for f in sorted(files, key=lambda f: (f.name, str(f))):
        check_regular_file(f)
        clip = check_clip_name(prediction_clip(f), str(f), what="file")
        if clip in index:
            raise InputError(f, f"names clip {clip!r} as {index[clip]} does: which one is meant? "
                             f"(a clip has one prediction file, {PREDICTION_RULE})")
        index[clip] = f
    return index


def truth_index(root: str | os.PathLike, protocol: str = "dcase2026") -> dict[str, tuple[Path, str]]:
    """{clip: (file, split)} of the GT files under ``root`` (a folder, or one file), in file-name
    order; ``split`` is the sub-folder name ("" directly in ``root``)."""
    check_protocol(protocol)
    root = Path(root)
    if not root.is_dir():
        if root.exists() or root.is_symlink():
            f = check_regular_file(root)
            return {check_clip_name(prediction_clip(f), str(f), what="file"): (f, "")}
        raise InputError(root, "no such ground-truth folder")
    found: dict[str, tuple[Path, str]] = {}
    plain: dict[str, tuple[Path, str]] = {}
    for folder, split in [(root, "")] + [(sub, sub.name) for sub in _subfolders(root)]:
        for f in _visible(folder, "*.json"):
            if f.name.endswith(GT_SUFFIX):
                target, clip = found, f.name[: -len(GT_SUFFIX)]
            elif protocol == "dcase2026-coco":
                target, clip = plain, f.name[: -len(".json")]
            else:
                continue
            check_regular_file(f)
            check_clip_name(clip, str(f), what="file")
            if clip in target:
                raise InputError(f, f"is a second ground-truth file for clip {clip!r} (the first: {target[clip][0]})")
            target[clip] = (f, split)
    for clip, v in plain.items():  # dcase2026-coco: <seq>.json where no <seq>_std.json names the clip
        found.setdefault(clip, v)
    return dict(sorted(found.items(), key=lambda kv: (kv[1][0].name, kv[0])))


@dataclass
class ClipFiles:
    """The file pairs one protocol scores, in the order it scores them."""

    pairs: list[tuple[str, Path, Path]]  # (clip, prediction file, GT file)
    skipped: list[str]  # prediction files without GT (file names), not scored
    gt_only: list[str]  # GT clips without a prediction file, not scored (as officially)


def pair_files(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, protocol: str = "dcase2026") -> ClipFiles:
    """Which prediction file is scored against which GT file; pairs in prediction file-name order
    (the order the official scripts walk them). No pair at all is an error."""
    check_protocol(protocol)
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction folder not found")
    preds = prediction_index(pred_dir)
    gt = truth_index(gt_dir, protocol)
    pairs = [(c, f, gt[c][0]) for c, f in preds.items() if c in gt]
    skipped = [f.name for c, f in preds.items() if c not in gt]
    if not pairs:
        gt_rule = GT_SUFFIX.join(("<seq>", "")) + (" or <seq>.json" if protocol == "dcase2026-coco" else "")
        raise InputError(pred_dir, "no prediction file matches a ground-truth file",
                         detail=f"looked for {PREDICTION_RULE} here (or one folder below when none is here) "
                         f"and {gt_rule} in {gt_dir} or one folder below; found {len(preds)} prediction file(s)"
                         + (f" (e.g. {', '.join(sorted(skipped)[:3])})" if skipped else "")
                         + f" and {len(gt)} GT file(s)"
                         + (f" (e.g. {', '.join(sorted(v[0].name for v in gt.values())[:3])})" if gt else ""))
    return ClipFiles(pairs, sorted(skipped), sorted(set(gt) - set(preds)))
