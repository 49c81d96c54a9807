"""The challenge's fixed facts and calib's one file hash, defined here once and imported everywhere.

This module imports nothing from calib (it is the bottom layer, see :mod:`calib.devtools.layers`).
"""
from __future__ import annotations

import hashlib
import os

#: the scored classes: ids 0..12 (class ids outside are skipped with a warning, as the official scorers do)
N_CLASSES = 13
CLASS_NAMES = (
    "Female speech",
    "Male speech",
    "Clapping",
    "Telephone",
    "Laughter",
    "Domestic sounds",
    "Walk/footsteps",
    "Door open/close",
    "Music",
    "Musical instrument",
    "Water tap",
    "Bell",
    "Knock",
)

#: the official scoring protocols: dcase2026 (2026-06-30, the final metric) and the 2026-04-02
#: COCO-style one (pycocotools' fixed IoU thresholds 0.50:0.05:0.95)
PROTOCOLS = ("dcase2026", "dcase2026-coco")
#: the dcase2026 protocol's soft-IoU thresholds when none are given
DEFAULT_THRESHOLDS = (0.25, 0.5, 0.75)

#: the challenge's per-file limit: a prediction (submission) file over it is an error
MAX_FILE_BYTES = 20 * 1024 * 1024


def sha256_bytes(data: bytes) -> str:
    """SHA-256 (hex) of bytes: the hash source files are recorded under (table metadata, recipe keys)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks (equal to ``sha256_bytes`` of its content)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
