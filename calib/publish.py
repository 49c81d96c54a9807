"""Publishing outputs whole or not at all: a file is written under a temporary name and renamed
into place; a set of outputs is built in a staging folder and moved into place only when all of
it was written, so a failure (or Ctrl-C) never leaves a half-written output where a user or the
next command would read it.

- :func:`atomic_path` / :func:`write_atomic`: one file (temp file in the same folder, then rename);
- :func:`staging` + :func:`publish_staged`: a folder of outputs (``calib run``, ``calib portfolio``,
  ``calib package``, ``calib export``);
- :func:`json_safe` / :func:`write_json`: the JSON reports those outputs hold (NaN and infinities
  as null, so strict JSON readers accept them).

Published files get the permissions the user's umask asks for (mkstemp and mkdtemp make private
ones).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask: read from /proc where Linux shows it, else by setting it and putting it
    back at once (under a lock, with 0o022 meanwhile: a file another thread creates in between is
    never left writable by others)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """(final, temporary) paths in the same folder, so a rename publishes the file at once."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; published files follow the umask as open() does
    return final, Path(tmp)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` then move the file into place; nothing is left behind on failure."""
    final, tmp = atomic_path(path)
    try:
        write(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None and every key made a string,
    recursively (tuples become lists): what strict JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(x) for x in value]
    return value


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as indented JSON (:func:`json_safe`; other objects as their ``str``) plus a newline,
    keys in their order. Meant for files inside a staging folder (not itself atomic)."""
    path = Path(path)
    path.write_text(json.dumps(json_safe(obj), indent=2, sort_keys=False, default=str) + "\n")
    return path


@contextlib.contextmanager
def staging(out: str | os.PathLike) -> Iterator[Path]:
    """A new private folder to build the outputs of ``out`` in, removed on leaving whatever
    happened. It lies inside ``out`` when that folder exists (the same file system, whatever is
    mounted where) and beside it otherwise (so nothing is created at ``out`` until it is published)."""
    out = Path(out)
    if out.is_dir():
        parent, prefix = out, ".staging-"
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        parent, prefix = out.parent, f".{out.name}.staging-"
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish_staged(staged: str | os.PathLike, out: str | os.PathLike, *, merge: bool = False) -> list[str]:
    """Move everything in the staging folder ``staged`` into ``out`` (created when missing) and
    return the names published, sorted.

    Default: each top-level entry replaces the entry of the same name in ``out`` (a folder is
    replaced whole, so no file of an older output survives inside it); other entries of ``out``
    are left alone. ``merge``: each file replaces the file at its relative path, folders are merged
    (files already in ``out`` that the staging folder does not hold stay)."""
    staged, out = Path(staged), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    if merge:
        for f in sorted(p for p in staged.rglob("*") if not p.is_dir()):
            rel = f.relative_to(staged)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, out / rel)
            names.append(rel.as_posix())
        return names
    for item in sorted(staged.iterdir()):
        dest = out / item.name
        if dest.is_symlink():
            dest.unlink()
        elif dest.is_dir():
            shutil.rmtree(dest)
        os.replace(item, dest)
        names.append(item.name)
    return names
