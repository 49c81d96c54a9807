"""SELD CSV teacher outputs -> the teacher table.

Accepted layouts (one row per frame, class and track; no header, or a header row that is skipped):
- ``polar4`` (AV-SELD 2023): frame, class, azimuth°, elevation°
- ``polar6`` (2024): frame, class, track, azimuth°, elevation°, distance cm
- ``cart6`` (2023 Cartesian): frame, class, track, x, y, z (a direction vector)
- ``cart7`` (2024 Cartesian): frame, class, track, x, y, z, distance cm

Directions become canvas coordinates as the DCASE 2026 files use them:
``x = (-azimuth + 180) mod 360`` and ``y = 90 - elevation`` (degrees, 1 px per degree). From a
Cartesian vector, ``azimuth = atan2(y, x)`` and ``elevation = atan2(z, hypot(x, y))``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from calib.io.errors import InputError
from calib.tables import N_CLASSES, TEACHER, conform

FORMATS = {"polar4": 4, "polar6": 6, "cart6": 6, "cart7": 7}


def to_canvas(azimuth, elevation):
    """Canvas (x, y) of directions in degrees; vectorized."""
    az = np.asarray(azimuth, dtype=np.float64)
    el = np.asarray(elevation, dtype=np.float64)
    return np.mod(-az + 180.0, 360.0), 90.0 - el


def from_canvas(x, y):
    """(azimuth, elevation) in degrees of canvas points; azimuth in (-180, 180]."""
    x = np.asarray(x, dtype=np.float64)
    az = 180.0 - x
    az = np.where(az <= -180.0, az + 360.0, az)
    return az, 90.0 - np.asarray(y, dtype=np.float64)


def cartesian_to_polar(x, y, z):
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    return np.degrees(np.arctan2(y, x)), np.degrees(np.arctan2(z, np.hypot(x, y)))


def _read_numeric(path: Path) -> np.ndarray:
    text = path.read_text()
    rows = [r for r in text.splitlines() if r.strip()]
    if rows and not _is_numeric_row(rows[0]):
        rows = rows[1:]  # header
    if not rows:
        return np.zeros((0, 0))
    widths = {len(r.split(",")) for r in rows}
    if len(widths) != 1:
        for i, r in enumerate(rows):
            if len(r.split(",")) != len(rows[0].split(",")):
                raise InputError(path, f"row has {len(r.split(','))} columns, the first has {len(rows[0].split(','))}",
                                 record=i, what="row")
    try:
        return np.array([[float(v) for v in r.split(",")] for r in rows], dtype=np.float64)
    except ValueError:
        for i, r in enumerate(rows):
            try:
                [float(v) for v in r.split(",")]
            except ValueError:
                raise InputError(path, f"non-numeric value in row {r!r}", record=i, what="row") from None
        raise


def _is_numeric_row(row: str) -> bool:
    try:
        [float(v) for v in row.split(",")]
        return True
    except ValueError:
        return False


def detect_format(arr: np.ndarray, path: Path) -> str:
    width = arr.shape[1]
    if width == 4:
        return "polar4"
    if width == 7:
        return "cart7"
    if width == 6:
        vec = arr[:, 3:6]
        norms = np.linalg.norm(vec, axis=1)
        return "cart6" if len(vec) and np.all(np.abs(vec) <= 1.0) and np.all(np.abs(norms - 1) < 0.2) else "polar6"
    raise InputError(path, f"{width} columns: not a SELD CSV layout (4, 6 or 7 columns)")


def read_teacher_file(path: str | os.PathLike, fmt: str = "auto") -> pl.DataFrame:
    path = Path(path)
    arr = _read_numeric(path)
    if arr.size == 0:
        return pl.DataFrame(schema=TEACHER)
    if fmt == "auto":
        fmt = detect_format(arr, path)
    if arr.shape[1] != FORMATS[fmt]:
        raise InputError(path, f"format {fmt} has {FORMATS[fmt]} columns, the file has {arr.shape[1]}")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise InputError(path, "non-finite value", record=int(bad[0]), what="row")
    frame, cls = arr[:, 0], arr[:, 1]
    bad = np.flatnonzero((frame < 0) | (frame != np.round(frame)))
    if bad.size:
        raise InputError(path, f"frame {frame[bad[0]]} is not a non-negative integer", record=int(bad[0]), what="row")
    bad = np.flatnonzero((cls < 0) | (cls >= N_CLASSES) | (cls != np.round(cls)))
    if bad.size:
        raise InputError(path, f"class {cls[bad[0]]} outside 0..{N_CLASSES - 1}", record=int(bad[0]), what="row")
    n = len(arr)
    track = arr[:, 2] if fmt != "polar4" else np.full(n, np.nan)
    dist = np.full(n, np.nan)
    if fmt == "polar4":
        az, el = arr[:, 2], arr[:, 3]
    elif fmt == "polar6":
        az, el, dist = arr[:, 3], arr[:, 4], arr[:, 5]
    else:
        az, el = cartesian_to_polar(arr[:, 3], arr[:, 4], arr[:, 5])
        if fmt == "cart7":
            dist = arr[:, 6]
    bad = np.flatnonzero((el < -90) | (el > 90))
    if bad.size:
        raise InputError(path, f"elevation {el[bad[0]]} outside [-90, 90]", record=int(bad[0]), what="row")
    x, y = to_canvas(az, el)
    df = pl.DataFrame({
        "clip": [path.stem] * n,
        "frame": frame.astype(np.int64),
        "class_id": cls.astype(np.int64),
        "track": pl.Series(track).fill_nan(None).cast(pl.Int64),
        "azimuth": az, "elevation": el,
        "distance": pl.Series(dist).fill_nan(None),
        "x": x, "y": y,
    })
    return conform(df, "teacher", where=str(path))


def read_teacher(paths: Sequence[str | os.PathLike], fmt: str = "auto") -> tuple[pl.DataFrame, dict]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.csv"))
        elif p.exists():
            files.append(p)
        else:
            raise InputError(p, "no such file or folder")
    if not files:
        raise InputError(", ".join(map(str, paths)), "no teacher *.csv files found")
    frames = [read_teacher_file(f, fmt) for f in files]
    sources = {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    return pl.concat(frames), sources
