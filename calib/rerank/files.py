"""Atomic writes for model folders: a temporary file in the same folder, then a rename."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import polars as pl

from calib.publish import current_umask, write_atomic


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_parquet(df: pl.DataFrame, path: str | os.PathLike) -> Path:
    return write_atomic(path, lambda p: df.write_parquet(p, compression="zstd", statistics=True))


def publish_folder(out: str | os.PathLike, write: Callable[[Path], object], *, marker: str) -> Path:
    """Build a folder with ``write(tmp_folder)`` next to ``out`` and move it into place only when
    complete, so a failure leaves nothing half-written. An existing folder holding ``marker`` (a
    previous model) is replaced; any other non-empty folder is left alone (an error)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        raise ValueError(f"{out}: a non-empty folder that is not a reranker model; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~current_umask())
        if out.exists():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
