"""Rendered ground truth, kept once per content: in memory always, on disk under ``cache_dir``.

Keys are content hashes (of a GT file's bytes, or of a clip's annotations), salted with the
renderer's version and parameters, so a changed file or setting simply gets a new entry and a
stale one is never read. Disk entries are ``.npz`` files written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from calib.publish import current_umask

#: bump when rendering changes in a way that alters cached maps
RENDER_VERSION = "3"
MEMORY_BUDGET = 2 * 1024**3  # bytes of cached maps kept in memory (least recently used dropped)
#: a file's digest is remembered only when it was last modified this long before it was hashed:
#: a rewrite within the file system's timestamp granularity could keep size and mtime (git's
#: "racy clean" rule; the ctime in the signature catches edits whose mtime was put back)
RACY_NS = 2_000_000_000


def annotations_digest(anns) -> str:
    """Content hash of a clip's annotations (what the maps and matching depend on)."""
    h = hashlib.blake2b(digest_size=20)
    for a in anns:
        h.update(struct.pack("<qqqd?", a.frame, a.class_id, a.index,
                             0.0 if a.distance is None else a.distance, a.distance is None))
        h.update(struct.pack("<q", len(a.polygons)))
        for p in a.polygons:
            arr = np.ascontiguousarray(p, dtype=np.float64)
            h.update(struct.pack("<q", arr.shape[0]))
            h.update(arr.tobytes())
    return h.hexdigest()


def pack_sparse(rows, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps of one clip as (off, pix, vals): row k's values vals[off[k]:off[k+1]] sit at flat
    pixels pix[off[k]:off[k+1]] (uint16: canvases are under 65536 pixels). A row is a flat map
    (its nonzero pixels are kept), a (pix, vals) pair already sparse, or None (empty)."""
    off = np.zeros(len(rows) + 1, dtype=np.int64)
    pix, vals = [], []
    for k, row in enumerate(rows):
        if row is None:
            p, v = np.zeros(0, np.uint16), np.zeros(0, dtype)
        elif isinstance(row, tuple):
            p, v = row
        else:
            p = np.flatnonzero(row)
            v = row[p]
        pix.append(p.astype(np.uint16))
        vals.append(v.astype(dtype, copy=False))
        off[k + 1] = off[k] + p.size
    return (off, np.concatenate(pix) if pix else np.zeros(0, np.uint16),
            np.concatenate(vals) if vals else np.zeros(0, dtype))


class PackedArrays:
    """Mixin for the dataclasses of numpy arrays the cache stores: the fields named in FIELDS
    round trip through to_arrays / from_arrays (one .npz entry), and nbytes sizes them."""

    FIELDS: tuple[str, ...] = ()

    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in self.FIELDS)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f: getattr(self, f) for f in self.FIELDS}

    @classmethod
    def from_arrays(cls, d):
        return cls(**{f: np.asarray(d[f]) for f in cls.FIELDS})


def entry_key(kind: str, digest: str, **params) -> str:
    salt = ",".join(f"{k}={params[k]!r}" for k in sorted(params))
    tag = hashlib.blake2b(f"{kind}|{RENDER_VERSION}|{salt}".encode(), digest_size=6).hexdigest()
    return f"{kind}-{tag}-{digest}"


DIGEST_INDEX = "digests.json"
#: version 2: {"version": 2, "files": {absolute path: [*stat signature, digest]}}; an index of
#: another version (version 1 had no ctime) is ignored, never misread
INDEX_VERSION = 2
STAT_FIELDS = ("st_size", "st_mtime_ns", "st_ctime_ns", "st_ino", "st_dev", "st_mode")


def stat_signature(st: os.stat_result) -> tuple[int, ...]:
    """What a file's digest is remembered under, as git's index does: size, mtime and ctime (in ns),
    inode, device and mode. An in-place edit changes the ctime even when a tool restores the size
    and mtime (``touch -r``, ``os.utime``); a replaced file changes the inode. Owner ids are left
    out, so a cache shared by a team stays valid."""
    return tuple(int(getattr(st, f)) for f in STAT_FIELDS)


def _publish(tmp: str | Path, final: Path) -> None:
    # mkstemp makes 0600 files: give cache files the user's umask, never writable by others
    os.chmod(tmp, 0o666 & ~current_umask() & ~0o002)
    os.replace(tmp, final)


def _read_index(path: Path) -> dict[str, tuple[tuple, str]]:
    """The digest index of a cache folder; an absent, unreadable or older one is empty (a cache)."""
    n = len(STAT_FIELDS)
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != INDEX_VERSION:
            return {}
        return {str(k): (tuple(int(x) for x in v[:n]), str(v[n])) for k, v in raw["files"].items()
                if isinstance(v, list) and len(v) == n + 1}
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return {}


def _write_index(path: Path, digests: dict) -> None:
    """Write the index atomically (a concurrent writer's entries may be lost: they are hashed
    again next time, never misread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".digests.", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": INDEX_VERSION, "files": {k: [*sig, d] for k, (sig, d) in sorted(digests.items())}}, f)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StatDigests:
    """Digests of files (``hash_file(path)``) remembered under their stat signature
    (:func:`stat_signature`), in memory and in an index file ``name`` of a folder (version
    :data:`INDEX_VERSION`), as git's index keeps its stat data: a warm re-run does not read and
    hash gigabytes again (the GT files' digests of :meth:`MapCache.file_digest` in
    ``CACHE/score/digests.json``; the recipe inputs' SHA-256s in ``CACHE/inputs/sha256.json``). A
    file modified within :data:`RACY_NS` of its hashing is not remembered (a later edit within the
    same clock tick could hide behind it)."""

    def __init__(self, hash_file, name: str):
        self._hash, self._name = hash_file, name
        self._lock = threading.Lock()
        self._known: dict[str, tuple[tuple, str]] = {}
        self._read: set[str] = set()
        self._unsaved: set[str] = set()

    def digest(self, path, folder=None, compute=None) -> str:
        """The file's digest: remembered (here, or in ``folder``'s index) under its current stat
        signature, else computed (by ``compute(path)`` when given)."""
        name = os.path.abspath(path)
        with self._lock:
            if folder is not None and str(folder) not in self._read:
                self._read.add(str(folder))
                self._known.update(_read_index(Path(folder) / self._name))
            known = self._known.get(name)
        st = os.stat(path)
        sig = stat_signature(st)
        if known is not None and known[0] == sig:
            return known[1]
        hashed_at = time.time_ns()
        digest = (compute or self._hash)(path)
        if hashed_at - st.st_mtime_ns > RACY_NS:
            with self._lock:
                self._known[name] = (sig, digest)
                if folder is not None:
                    self._unsaved.add(str(folder))
        return digest

    def save(self, folder) -> None:
        """Write what was learned to ``folder``'s index (one write per batch of files)."""
        with self._lock:
            if folder is not None and str(folder) in self._unsaved:
                _write_index(Path(folder) / self._name, self._known)
                self._unsaved.discard(str(folder))

    def clear(self) -> None:
        """Forget the in-memory part, as a new process would."""
        with self._lock:
            self._known.clear()
            self._read.clear()
            self._unsaved.clear()


class MapCache:
    """A two-level store of per-clip GT renderings (objects with to_arrays/from_arrays)."""

    def __init__(self, budget: int = MEMORY_BUDGET):
        self.budget = budget
        self._mem: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._files = StatDigests(None, DIGEST_INDEX)  # the GT files' digests (file_digest)
        self._lock = threading.RLock()  # jobs on threads (calib.score.parallel.thread_map) share it

    def file_digest(self, path, read, cache_dir=None) -> str:
        """Content hash of a file (read() gives its bytes), remembered while its stat signature
        (:func:`stat_signature`: size, mtime, ctime, inode, device, mode) stays the same: a warm re-score does not read and hash every GT file
        again. With ``cache_dir`` the digests remembered there (``digests.json``) are read, and
        :meth:`save_digests` writes the new ones back once the caller has hashed all its files, so
        a new process scoring against the same cache skips the hashing too (git's index does the
        same with its stat data). clear() forgets the in-memory part, as a new process would."""
        from calib.score.annotations import file_digest

        return self._files.digest(path, cache_dir, compute=lambda _: file_digest(read()))

    def save_digests(self, cache_dir) -> None:
        """Write the remembered digests to ``cache_dir``'s index if file_digest learned new ones
        there (one write per batch of files, not one per file)."""
        self._files.save(cache_dir)

    def get(self, key: str, cache_dir, factory):
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                value = self._mem[key][0]
                if cache_dir is not None and not (Path(cache_dir) / f"{key}.npz").exists():
                    self._write(key, value, cache_dir)  # in memory from another run: keep it on disk too
                return value
            if cache_dir is not None:
                path = Path(cache_dir) / f"{key}.npz"
                if path.exists():
                    try:
                        with np.load(path, allow_pickle=False) as z:
                            value = factory.from_arrays(z)
                    except (OSError, ValueError, KeyError):
                        value = None  # unreadable entry: render again and overwrite it
                    if value is not None:
                        self.put(key, value, None)
                        return value
            return None

    def put(self, key: str, value, cache_dir) -> None:
        with self._lock:
            size = int(value.nbytes())
            if key in self._mem:
                self._bytes -= self._mem.pop(key)[1]
            self._mem[key] = (value, size)
            self._bytes += size
            while self._bytes > self.budget and len(self._mem) > 1:
                _, (_, s) = self._mem.popitem(last=False)
                self._bytes -= s
            if cache_dir is not None:
                self._write(key, value, cache_dir)

    @staticmethod
    def _write(key: str, value, cache_dir) -> None:
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npz", dir=folder)
        os.close(fd)
        try:
            np.savez(tmp, **value.to_arrays())
            _publish(tmp, folder / f"{key}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def clear(self, kind: str | None = None) -> None:
        """Forget everything held in memory (as a new process would start), or with ``kind`` only
        the entries of that kind (e.g. "dcase2026-pred": prediction rows; GT maps kept)."""
        with self._lock:
            if kind is not None:
                of_kind = re.compile(re.escape(kind) + r"-[0-9a-f]{12}-")  # entry_key's layout: kind-tag-digest
                for key in [k for k in self._mem if of_kind.match(k)]:
                    self._bytes -= self._mem.pop(key)[1]
                return
            self._mem.clear()
            self._bytes = 0
            self._files.clear()


#: the process-wide cache the engines use: rendered GT maps (kinds "dcase2026", "coco") and the
#: prediction rows of :mod:`calib.score.pred_cache` (kind "dcase2026-pred")
GT_CACHE = MapCache()

_FOLDER: ContextVar[Path | None] = ContextVar("calib_score_cache_folder", default=None)


@contextmanager
def cache_folder(path):
    """Within the block, a scoring call given no ``cache_dir`` keeps its GT maps and prediction
    rows in ``path`` too (``calib run`` and ``calib portfolio`` use their stage cache's ``score/``
    folder, so the next run or process reuses them). ``None`` leaves it to memory."""
    token = _FOLDER.set(None if path is None else Path(path))
    try:
        yield
    finally:
        _FOLDER.reset(token)


def default_cache_dir() -> Path | None:
    """The folder set by the innermost :func:`cache_folder` block, or None."""
    return _FOLDER.get()
