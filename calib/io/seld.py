"""SELD CSV teacher outputs (and STARSS metadata) -> the teacher table.

Accepted layouts (one row per frame, class and track/source; no header, or one header row that is
skipped):

- ``polar4`` (AV-SELD 2023): frame, class, azimuth°, elevation°
- ``polar5`` (STARSS22/23 metadata): frame, class, source, azimuth°, elevation° (source = track)
- ``cart5`` (SELD output): frame, class, x, y, z (a direction vector)
- ``polar6`` (DCASE 2024): frame, class, track, azimuth°, elevation°, distance cm
- ``cart6`` (2023 Cartesian): frame, class, track, x, y, z
- ``cart7`` (2024 Cartesian): frame, class, track, x, y, z, distance cm

``auto`` picks by the column count and, for 5 and 6 columns, by the values: Cartesian when
|x|, |y|, |z| <= 1 on every row of the file (directions in degrees never all fit in [-1, 1]).
Real multi-ACCDOA vectors are *not* unit length (norms about 0.5-0.83 for active classes), so the
length is not used; only the direction counts. The layout chosen for each file is reported.
Rows are checked: integer frames >= 0, classes 0..12, integer tracks >= 0, elevations in
[-90, 90], azimuths in [-360, 360], Cartesian components in [-1, 1] and not all zero, distances
>= 0; a bad row is an error naming the file and the row.

Directions become canvas coordinates as the DCASE 2026 files use them:
``x = (-azimuth + 180) mod 360`` and ``y = 90 - elevation`` (degrees, 1 px per degree). From a
Cartesian vector, ``azimuth = atan2(y, x)`` and ``elevation = atan2(z, hypot(x, y))``.
"""
from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from calib.constants import N_CLASSES, sha256_bytes
from calib.io.clipnames import check_clip_name
from calib.io.discover import read_file_bytes
from calib.io.errors import InputError
from calib.io.ingested import Ingested
from calib.tables import TEACHER, conform

#: layout -> its columns (after frame, class)
LAYOUTS = {
    "polar4": ("azimuth", "elevation"),
    "polar5": ("track", "azimuth", "elevation"),
    "cart5": ("x", "y", "z"),
    "polar6": ("track", "azimuth", "elevation", "distance"),
    "cart6": ("track", "x", "y", "z"),
    "cart7": ("track", "x", "y", "z", "distance"),
}
FORMATS = {name: 2 + len(cols) for name, cols in LAYOUTS.items()}
DESCRIPTIONS = {
    "polar4": "frame, class, azimuth, elevation (AV-SELD 2023)",
    "polar5": "frame, class, source, azimuth, elevation (STARSS22/23 metadata)",
    "cart5": "frame, class, x, y, z (Cartesian SELD output)",
    "polar6": "frame, class, track, azimuth, elevation, distance cm (DCASE 2024)",
    "cart6": "frame, class, track, x, y, z (Cartesian)",
    "cart7": "frame, class, track, x, y, z, distance cm (Cartesian 2024)",
}


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


def _numeric_rows(path: Path, data: bytes) -> np.ndarray:
    """The CSV's numbers, one row per non-empty line (a first line whose first cell is not a number
    is a header and skipped); a short, long or non-numeric row is an error naming it."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, "not UTF-8 text", detail=f"byte 0x{data[e.start]:02x} at offset {e.start}") from None
    if not data.strip():
        return np.zeros((0, 0))
    try:
        text = pl.read_csv(io.BytesIO(data), has_header=False, infer_schema=False)
    except pl.exceptions.PolarsError:
        text = None  # a row longer than the first: found below
    if text is None or text.width == 0:
        _raise_ragged(path, data)
    text = text.select(pl.all().str.strip_chars())
    text = text.filter(~pl.all_horizontal(pl.all().is_null() | (pl.all() == "")))  # blank lines
    nums = text.select(pl.all().cast(pl.Float64, strict=False))
    bad = (nums.select(pl.any_horizontal(pl.all().is_null())).to_series()
           & text.select(pl.all_horizontal(pl.all().is_not_null())).to_series())
    if text.height and nums[0, 0] is None:  # a header row
        text, nums, bad = text.slice(1), nums.slice(1), bad.slice(1)
    short = np.flatnonzero(text.select(pl.any_horizontal(pl.all().is_null())).to_series().to_numpy())
    non_numeric = np.flatnonzero(bad.to_numpy())
    if short.size and (not non_numeric.size or short[0] < non_numeric[0]):
        r = int(short[0])
        n = sum(v is not None for v in text.row(r))
        raise InputError(path, f"row has {n} columns, the first has {text.width}", record=r, what="row")
    if non_numeric.size:
        r = int(non_numeric[0])
        raise InputError(path, f"non-numeric value in row {','.join(v or '' for v in text.row(r))!r}", record=r, what="row")
    return nums.to_numpy().astype(np.float64, copy=False)


def _raise_ragged(path: Path, data: bytes) -> None:
    """Error path only: name the first row whose column count differs from the first row's."""
    rows = [r for r in data.decode("utf-8").splitlines() if r.strip()]
    width = len(rows[0].split(","))
    for i, r in enumerate(rows):
        if len(r.split(",")) != width:
            raise InputError(path, f"row has {len(r.split(','))} columns, the first has {width}", record=i, what="row")
    raise InputError(path, "not a CSV file")


def detect_format(arr: np.ndarray, path: Path) -> str:
    """The layout of a file's rows (see the module doc)."""
    width = arr.shape[1]
    if width == 4:
        return "polar4"
    if width == 5:
        return "cart5" if np.all(np.abs(arr[:, 2:5]) <= 1.0) else "polar5"
    if width == 6:
        return "cart6" if np.all(np.abs(arr[:, 3:6]) <= 1.0) else "polar6"
    if width == 7:
        return "cart7"
    raise InputError(path, f"{width} columns: not a SELD CSV layout (4, 5, 6 or 7 columns: "
                     + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()) + ")")


def _first_row(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def _rows_to_table(path: Path, arr: np.ndarray, fmt: str, clip: str) -> pl.DataFrame:
    if arr.shape[1] != FORMATS[fmt]:
        raise InputError(path, f"format {fmt} has {FORMATS[fmt]} columns, the file has {arr.shape[1]}")
    n = len(arr)
    col = {name: arr[:, 2 + k] for k, name in enumerate(LAYOUTS[fmt])}

    def check(mask, message):
        r = _first_row(mask)
        if r is not None:
            raise InputError(path, message(r), record=r, what="row")

    check(~np.isfinite(arr).all(axis=1), lambda r: "non-finite value")
    frame, cls = arr[:, 0], arr[:, 1]
    check((frame < 0) | (frame != np.round(frame)) | (frame > 2**31 - 1),
          lambda r: f"frame {frame[r]} is not a non-negative integer")
    check((cls < 0) | (cls >= N_CLASSES) | (cls != np.round(cls)), lambda r: f"class {cls[r]} outside 0..{N_CLASSES - 1}")
    track = col.get("track", np.full(n, np.nan))
    if "track" in col:
        check((track < 0) | (track != np.round(track)) | (track > 2**31 - 1),
              lambda r: f"track (source) {track[r]} is not a non-negative integer")
    if "x" in col:
        vec = np.column_stack([col["x"], col["y"], col["z"]])
        check((np.abs(vec) > 1.0).any(axis=1),
              lambda r: f"{fmt}: x, y, z = {vec[r].tolist()} is not a Cartesian direction (components in [-1, 1]); "
                        "azimuth/elevation in degrees? pass --seld-format with a polar layout")
        check(~(np.abs(vec) > 0).any(axis=1), lambda r: "direction vector (0, 0, 0) has no direction")
        az, el = cartesian_to_polar(vec[:, 0], vec[:, 1], vec[:, 2])
    else:
        az, el = col["azimuth"], col["elevation"]
        check((el < -90) | (el > 90), lambda r: f"elevation {el[r]} outside [-90, 90]")
        check((az < -360) | (az > 360), lambda r: f"azimuth {az[r]} outside [-360, 360] degrees")
    dist = col.get("distance", np.full(n, np.nan))
    if "distance" in col:
        check(dist < 0, lambda r: f"negative distance {dist[r]} (cm)")
    x, y = to_canvas(az, el)
    df = pl.DataFrame({
        "clip": [clip] * n,
        "frame": frame.astype(np.int64),
        "class_id": cls.astype(np.int64),
        "track": pl.Series(track).fill_nan(None).cast(pl.Int64),
        "azimuth": az, "elevation": el,
        "distance": pl.Series(dist).fill_nan(None),
        "x": x, "y": y,
    })
    return conform(df, "teacher", where=str(path))


def _read_one(path: Path, fmt: str) -> tuple[pl.DataFrame, str | None, str]:
    """(table, layout read or None for an empty file, sha256)."""
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown SELD layout {fmt!r}; known: auto, {', '.join(FORMATS)}")
    clip = check_clip_name(path.stem, str(path), what="file")
    data = read_file_bytes(path)
    arr = _numeric_rows(path, data)
    if arr.size == 0:
        return pl.DataFrame(schema=TEACHER), None, sha256_bytes(data)
    layout = detect_format(arr, path) if fmt == "auto" else fmt
    return _rows_to_table(path, arr, layout, clip), layout, sha256_bytes(data)


def read_teacher_file(path: str | os.PathLike, fmt: str = "auto") -> pl.DataFrame:
    """One SELD CSV file as a teacher table (the clip is the file's stem)."""
    return _read_one(Path(path), fmt)[0]


def teacher_files(paths: Sequence[str | os.PathLike]) -> dict[str, tuple[Path, str]]:
    """{clip: (file, split)} of the ``*.csv`` at ``paths``: given files, and in each folder its
    files and those of its sub-folders (split folders such as ``metadata_dev/dev-test-tau/``).
    Two files for one clip are an error naming both."""
    found: dict[str, tuple[Path, str]] = {}
    for p in map(Path, paths):
        if p.is_dir():
            files = [(f, "") for f in sorted(p.glob("*.csv"))]
            files += [(f, f.parent.name) for f in sorted(p.glob("*/*.csv")) if not f.parent.name.startswith(".")]
            files = [(f, s) for f, s in files if not f.name.startswith(".")]
        elif p.exists() or p.is_symlink():
            files = [(p, "")]
        else:
            raise InputError(p, "no such file or folder")
        for f, split in files:
            clip = check_clip_name(f.stem, str(f), what="file")
            if clip in found:
                raise InputError(f, f"is a second teacher file for clip {clip!r} (the first: {found[clip][0]})")
            found[clip] = (f, split)
    return found


def read_teachers(paths: Sequence[str | os.PathLike], fmt: str = "auto") -> Ingested:
    """Read SELD CSV files/folders into one teacher table; ``notes`` say which layout each file
    was read as."""
    files = teacher_files(paths)
    if not files:
        raise InputError(", ".join(map(str, paths)), "no teacher *.csv files found")
    frames, sources, layouts = [], {}, {}
    for clip, (f, _) in files.items():
        df, layout, digest = _read_one(f, fmt)
        frames.append(df)
        sources[str(f)] = digest
        layouts[f] = layout
    counts = Counter(v for v in layouts.values() if v is not None)
    how = "detected from the columns and values" if fmt == "auto" else "as asked"
    notes = [f"read {n} teacher file(s) as {k} ({DESCRIPTIONS[k]}), {how}" for k, n in sorted(counts.items())]
    empty = sum(v is None for v in layouts.values())
    if empty:
        notes.append(f"{empty} teacher file(s) hold no rows (clips kept, with nothing active)")
    widths = Counter(FORMATS[k] for k in counts)
    if fmt == "auto" and any(n > 1 for n in widths.values()):
        mixed = {k: next(str(f) for f, v in layouts.items() if v == k) for k in counts if widths[FORMATS[k]] > 1}
        notes.append("warning: files with the same column count were read as different layouts ("
                     + ", ".join(f"{k}: e.g. {f}" for k, f in sorted(mixed.items()))
                     + "); if they come from one system, pass --seld-format")
    table = pl.concat(frames) if frames else pl.DataFrame(schema=TEACHER)
    return Ingested(table, sources, {clip: split for clip, (_, split) in files.items()}, notes)


def read_teacher(paths: Sequence[str | os.PathLike], fmt: str = "auto") -> tuple[pl.DataFrame, dict]:
    """(teacher table, {file: sha256}); :func:`read_teachers` also gives the clips and layouts."""
    got = read_teachers(paths, fmt)
    return got.table, got.sources
