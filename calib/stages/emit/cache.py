"""Emitted detections, content-addressed: a detection is emitted once per emitter.

A portfolio runs many chains (variants, folds) over the same detections; most of them only keep a
subset of the detections or change their scores, so the emitter at the end of each chain would
draw the same detection again and again. :class:`EmitCache` keeps what each detection gave, keyed
by the 128-bit content hash of its points (:func:`calib.canvas.points.row_hashes`, plus what the
emitter reads of its score) under the emitter's key (:func:`emitter_key`: its type, its parameters
and the code it runs). The stages hand it their whole table at once: one vectorized lookup, the
missing detections emitted (each distinct one once, even when it appears several times), stored.

- **In memory**: blocks of emitted detections (one per store), least recently used dropped first
  once they hold more than ``max_bytes`` (``CALIB_EMIT_CACHE_MIB``, default 1024; 0 keeps nothing).
- **On disk** (optional, :func:`stored_in`; ``calib run`` and ``calib portfolio`` put it in the stage
  cache as ``CACHE/emitted/``): one Parquet file per stored block under the emitter's key, columns
  ``k0``, ``k1`` (the hash), ``has`` (whether the emitter gave the detection anything) and
  ``points``; written to a temporary name and renamed, never writable by others. Nothing in it is
  executed: it is read as a table and checked.

One process-wide cache serves every emitter stage (:func:`emit_cache`); :attr:`EmitCache.stats`
counts the detections emitted and served.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from calib.canvas.points import FlatPoints, flatten, points_arrow
from calib.constants import sha256_file
from calib.io.errors import InputError
from calib.publish import current_umask
from calib.tables import POLYGONS

__all__ = ["CacheStats", "EmitCache", "EmitCacheError", "Lookup", "emit_cache", "emitter_key", "stored_in"]

DEFAULT_MAX_MIB = 1024
#: points per stored block (about 24 MB)
BLOCK_POINTS = 1 << 20
_KEY_COLUMNS = ("k0", "k1")
#: the files whose code decides what an emitter gives (with numpy's and scipy's versions)
_CODE = ("canvas", "stages/emit", "io/seld.py")


class EmitCacheError(InputError):
    """A file of the emitted-detections cache that cannot be read back."""


@functools.cache
def code_version() -> str:
    """SHA-256 of the emitters' code (:mod:`calib.canvas`, :mod:`calib.stages.emit`,
    :mod:`calib.io.seld`) and of the numpy and scipy versions, once per process."""
    import scipy

    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256(f"numpy {np.__version__} scipy {scipy.__version__}".encode())
    for rel in _CODE:
        p = root / rel
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


def emitter_key(name: str, params: dict) -> str:
    """Key of an emitter: its type, parameters and code version (32 hex digits)."""
    blob = json.dumps({"type": name, "params": params, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass
class CacheStats:
    emitted: int = 0  # detections handed to an emitter (each distinct one of a call once)
    served: int = 0  # detections answered from the cache (memory or disk)
    read_from_disk: int = 0  # of those, found on disk


@dataclass(eq=False)
class _Block:
    emitter: str
    keys: np.ndarray  # (m, 2) uint64
    has: np.ndarray  # (m,) bool
    points: FlatPoints  # m detections
    used: int = 0
    nbytes: int = 0

    def __post_init__(self):
        p = self.points
        self.nbytes = int(self.keys.nbytes + self.has.nbytes + 24 * p.n_points + 8 * (p.n + p.n_polys + 2))


@dataclass
class _Index:
    """Sorted first lanes of an emitter's stored keys, with the block and row of each."""

    k0: np.ndarray
    k1: np.ndarray
    block: np.ndarray
    row: np.ndarray


_DIRECTORY: contextvars.ContextVar[Path | None] = contextvars.ContextVar("calib_emit_cache_dir", default=None)


@contextlib.contextmanager
def stored_in(directory: str | os.PathLike | None):
    """Within this block the cache also keeps emitted detections in ``directory`` (on disk, shared
    by processes and later runs); None: memory only."""
    token = _DIRECTORY.set(None if directory is None else Path(directory))
    try:
        yield
    finally:
        _DIRECTORY.reset(token)


def _lookup(index: _Index, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``index`` of ``keys`` (-1 where absent)."""
    at = np.searchsorted(index.k0, keys[:, 0])
    at = np.minimum(at, max(index.k0.size - 1, 0))
    hit = np.zeros(len(keys), bool)
    if index.k0.size:
        # a first lane shared by two stored keys is a 2^-64 event: only the first is looked at,
        # so such a detection is emitted again, never answered wrongly
        hit = (index.k0[at] == keys[:, 0]) & (index.k1[at] == keys[:, 1])
    return np.where(hit, at, -1), hit


def _build_index(blocks: list[_Block]) -> _Index:
    if not blocks:
        z = np.zeros(0, np.uint64)
        return _Index(z, z, np.zeros(0, np.int64), np.zeros(0, np.int64))
    keys = np.concatenate([b.keys for b in blocks])
    block = np.repeat(np.arange(len(blocks)), [len(b.keys) for b in blocks])
    row = np.concatenate([np.arange(len(b.keys)) for b in blocks])
    order = np.argsort(keys[:, 0], kind="stable")
    return _Index(keys[order, 0], keys[order, 1], block[order], row[order])


@dataclass
class Lookup:
    """What the cache knows of some keys: key k is known when ``found[k]``; then ``has[k]`` says
    whether the emitter gave that detection anything, and it gave detection ``row[k]`` of
    ``parts[part[k]]``."""

    found: np.ndarray
    has: np.ndarray
    parts: list[FlatPoints]
    part: np.ndarray
    row: np.ndarray


class EmitCache:
    """What emitters gave for detections, by content (see the module docstring)."""

    def __init__(self, max_bytes: int | None = None):
        if max_bytes is None:
            max_bytes = int(float(os.environ.get("CALIB_EMIT_CACHE_MIB", DEFAULT_MAX_MIB)) * 2**20)
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._blocks: dict[str, list[_Block]] = {}
        self._index: dict[str, _Index] = {}
        self._clock = 0
        self._nbytes = 0
        self._disk_index: dict[tuple[Path, str], tuple[dict[str, tuple[float, int]], _Index, list[Path]]] = {}
        self._lock = threading.RLock()  # chains on threads (calib.score.parallel.thread_map) share it

    # -- memory
    def clear(self) -> None:
        """Forget everything held in memory and reset the counters (files on disk stay)."""
        with self._lock:
            self._blocks.clear()
            self._index.clear()
            self._disk_index.clear()
            self._nbytes = 0
            self.stats = CacheStats()

    @property
    def nbytes(self) -> int:
        """Bytes held in memory."""
        return self._nbytes

    def _index_of(self, emitter: str) -> _Index:
        if emitter not in self._index:
            self._index[emitter] = _build_index(self._blocks.get(emitter, []))
        return self._index[emitter]

    def _add_block(self, block: _Block) -> None:
        if self.max_bytes <= 0 or block.nbytes > self.max_bytes or not len(block.keys):
            return
        self._clock += 1
        block.used = self._clock
        self._blocks.setdefault(block.emitter, []).append(block)
        self._index.pop(block.emitter, None)
        self._nbytes += block.nbytes
        if self._nbytes <= self.max_bytes:
            return
        # least recently used first, never the block just added
        every = sorted((b for bl in self._blocks.values() for b in bl if b is not block), key=lambda b: b.used)
        gone: set[int] = set()
        for b in every:
            if self._nbytes <= self.max_bytes:
                break
            gone.add(id(b))
            self._index.pop(b.emitter, None)
            self._nbytes -= b.nbytes
        for name in list(self._blocks):
            self._blocks[name] = [b for b in self._blocks[name] if id(b) not in gone]

    # -- the two calls the emitters make
    def get(self, emitter: str, keys: np.ndarray) -> "Lookup":
        """What the cache knows of each key (see :class:`Lookup`); nothing is copied."""
        with self._lock:
            keys = np.asarray(keys, np.uint64).reshape(-1, 2)
            res = Lookup(np.zeros(len(keys), bool), np.zeros(len(keys), bool), [], np.full(len(keys), -1, np.int64),
                         np.full(len(keys), -1, np.int64))
            self._clock += 1
            self._serve(self._blocks.get(emitter, []), self._index_of(emitter), keys, res)
            directory = _DIRECTORY.get()
            if directory is not None and not res.found.all():
                before = int(res.found.sum())
                for block in self._read_blocks(directory, emitter, keys[~res.found]):
                    self._add_block(block)
                    self._serve([block], _build_index([block]), keys, res)
                self.stats.read_from_disk += int(res.found.sum()) - before
            self.stats.served += int(res.found.sum())
            return res

    def _serve(self, blocks: list[_Block], index: _Index, keys: np.ndarray, res: "Lookup") -> None:
        """Answer the keys not yet found that ``blocks`` (indexed by ``index``) hold."""
        todo = np.flatnonzero(~res.found)
        if todo.size == 0 or index.k0.size == 0:
            return
        at, hit = _lookup(index, keys[todo])
        if not hit.any():
            return
        pos = todo[hit]
        blk_of, rows = index.block[at[hit]], index.row[at[hit]]
        for b in np.unique(blk_of).tolist():
            sel = blk_of == b
            block = blocks[b]
            block.used = self._clock
            res.part[pos[sel]] = len(res.parts)
            res.parts.append(block.points)
            res.has[pos[sel]] = block.has[rows[sel]]
        res.row[pos] = rows
        res.found[pos] = True

    def put(self, emitter: str, keys: np.ndarray, has: np.ndarray, points: FlatPoints) -> None:
        """Keep what the emitter gave detections ``keys`` (``points``: one detection each), in
        blocks of at most :data:`BLOCK_POINTS` points (so that the least recently used can go
        without the rest)."""
        with self._lock:
            keys = np.ascontiguousarray(keys, np.uint64).reshape(-1, 2)
            has = np.asarray(has, bool)
            directory = _DIRECTORY.get()
            cum = np.cumsum(points.count)
            a = 0
            while a < len(keys):
                b = max(int(np.searchsorted(cum, (cum[a - 1] if a else 0) + BLOCK_POINTS, side="right")), a + 1)
                b = min(b, len(keys))
                block = _Block(emitter, keys[a:b].copy(), has[a:b].copy(), _owned(points.slice(a, b)))
                if directory is not None:
                    self._write(directory, block)
                self._add_block(block)
                a = b

    # -- disk
    def _folder(self, directory: Path, emitter: str) -> Path:
        return directory / emitter

    def _write(self, directory: Path, block: _Block) -> None:
        folder = self._folder(directory, block.emitter)
        for d in (directory, folder):
            if not d.is_dir():
                d.mkdir(mode=0o775, parents=True, exist_ok=True)  # the umask applies; never o+w
                os.chmod(d, 0o775 & ~current_umask())
        name = hashlib.sha256(block.keys.tobytes()).hexdigest()[:32] + ".parquet"
        final = folder / name
        if final.exists():
            return
        table = pa.table({"k0": pa.array(block.keys[:, 0]), "k1": pa.array(block.keys[:, 1]),
                          "has": pa.array(block.has), "points": points_arrow(block.points, large=False)})
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _disk_keys(self, directory: Path, emitter: str) -> tuple[_Index, list[Path]]:
        """The keys stored on disk for an emitter (re-read when its files change)."""
        folder = self._folder(directory, emitter)
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        stamp = {}
        for f in files:
            st = f.stat()
            stamp[f.name] = (st.st_mtime, st.st_size)
        cached = self._disk_index.get((directory, emitter))
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        keys, block, row = [], [], []
        for i, f in enumerate(files):
            t = self._read(f, columns=list(_KEY_COLUMNS))
            k = np.column_stack([t.column(c).to_numpy() for c in _KEY_COLUMNS]).astype(np.uint64)
            keys.append(k)
            block.append(np.full(len(k), i))
            row.append(np.arange(len(k)))
        if keys:
            k = np.concatenate(keys)
            order = np.argsort(k[:, 0], kind="stable")
            index = _Index(k[order, 0], k[order, 1], np.concatenate(block)[order], np.concatenate(row)[order])
        else:
            index = _build_index([])
        self._disk_index[(directory, emitter)] = (stamp, index, files)
        return index, files

    def _read(self, path: Path, columns=None) -> pa.Table:
        hint = f"delete {path} (or the whole folder {path.parent.parent}) and run again to recompute it"
        try:
            table = pq.read_table(path, columns=columns)
        except (OSError, pa.ArrowException) as e:
            raise EmitCacheError(path, f"cannot be read as an emitted-detections cache file ({e}; {hint})") from None
        want = {"k0": pa.uint64(), "k1": pa.uint64(), "has": pa.bool_()}
        for name in columns or [*want, "points"]:
            if name not in table.column_names or (name in want and table.schema.field(name).type != want[name]):
                raise EmitCacheError(path, f"is not an emitted-detections cache file (column {name!r}; {hint})")
        return table

    def _read_blocks(self, directory: Path, emitter: str, keys: np.ndarray) -> list[_Block]:
        """The blocks stored on disk that hold any of ``keys``."""
        index, files = self._disk_keys(directory, emitter)
        at, hit = _lookup(index, keys)
        out = []
        for i in np.unique(index.block[at[hit]]).tolist():
            path = files[i]
            t = self._read(path)
            k = np.column_stack([t.column(c).to_numpy() for c in _KEY_COLUMNS]).astype(np.uint64)
            try:
                pts = flatten(pl.Series("points", t.column("points")).cast(POLYGONS))
            except (pl.exceptions.PolarsError, pa.ArrowException, KeyError, TypeError, ValueError) as e:
                raise EmitCacheError(path, f"holds points calib cannot read ({e}; delete it and run again)") from None
            if pts.n != len(k):
                raise EmitCacheError(path, f"holds {pts.n} detections for {len(k)} keys (delete it and run again)")
            out.append(_Block(emitter, k, t.column("has").to_numpy(zero_copy_only=False).astype(bool), pts))
        return out


def _owned(fp: FlatPoints) -> FlatPoints:
    """``fp`` with arrays of its own (a view into a larger array would keep all of it alive)."""
    own = [a if a.base is None else a.copy() for a in (fp.x, fp.y, fp.e, fp.det_off, fp.poly_off)]
    return FlatPoints(*own)


_CACHE = EmitCache()


def emit_cache() -> EmitCache:
    """The process-wide cache every emitter stage uses."""
    return _CACHE
