"""Folders and files calib creates for recipes, caches and portfolios: with the permissions the
user's umask asks for, never writable by others (a shared cache anyone could rewrite would feed
stale or forged outputs to everyone using it)."""
from __future__ import annotations

import os
from pathlib import Path

from calib.publish import current_umask


def share_mode(path: Path) -> None:
    """Give a file or folder calib created the umask's permissions minus write permission for
    others (mkdtemp and mkstemp make private ones)."""
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & ~current_umask() & ~0o002)


def make_dirs(path: str | os.PathLike) -> Path:
    """``mkdir -p`` whose new folders follow :func:`share_mode`; returns the path."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for d in missing:
        share_mode(d)
    return path
