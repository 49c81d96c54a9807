"""The stage cache: every stage's output tables as Parquet under a content key.

A stage's key is the hash of (previous key, stage type, its full parameters, the code it runs, the
contents of the files its path parameters name, and for stages that learn, the clips they are fit
on); the first previous key is the inputs' content key. Keys can therefore be computed before
anything runs, and a re-run resumes from the last stage whose key is cached: changing one
parameter recomputes that stage and the ones after it.

"The code it runs" is a fingerprint of every file of the ``calib`` and ``features`` packages
(:func:`code_fingerprint`, computed once per process), plus the stage class's own source file (a
stage defined outside calib) and the packages of the modules its parameters name
(``Stage.code_modules``, e.g. the reranker's feature modules). A whole-package fingerprint is
coarser than following each stage's imports, but it is exact where it matters: stages import
lazily inside functions (``calib.score``, ``calib.canvas``, ``features``), which a static import
walk misses, and any edit anywhere only costs a recomputation, never a stale output.

An entry ``CACHE/stages/<key>/`` holds ``manifest.json`` (table name -> Parquet file, relative to
the cache root), the Parquet files of the tables the stage changed (unchanged ones point at the
file that already holds them) and, for fitted stages, ``state/`` (the learned attributes as JSON,
npz, Parquet and model text: :mod:`calib.recipe.state`; nothing in a cache is ever unpickled).
Entries are created with the user's umask, never writable by others.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import json
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from calib.constants import sha256_file
from calib.io.errors import InputError
from calib.recipe.inputs import digest
from calib.recipe.paths import make_dirs, share_mode
from calib.recipe.state import load_state, save_state
from calib.stages.base import Stage, Tables
from calib.tables import KINDS, conform, read_table, write_table

MANIFEST = "manifest.json"
STATE = "state"  # folder of an entry holding the learned state

__all__ = ["CacheEntryError", "StageCache", "code_fingerprint", "module_digest", "source_fingerprint", "stage_key",
           "tree_digest"]


class CacheEntryError(InputError):
    """A stage-cache entry that cannot be read back (damaged, tampered or from another version)."""


def tree_digest(path: str | os.PathLike, *, skip_hidden: bool = False) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative names and contents, sorted);
    ``"missing"`` when nothing is there. ``skip_hidden`` leaves out ``__pycache__`` and names
    starting with ``.`` (for source trees)."""
    root = Path(path)
    if root.is_file():
        return sha256_file(root)
    if not root.is_dir():
        return "missing"
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if skip_hidden and any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
            continue
        if f.is_file():
            h.update(rel.as_posix().encode() + b"\0" + bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


def source_fingerprint(roots: Iterable[str | os.PathLike]) -> str:
    """Fingerprint of source trees: every file's relative name and contents (compiled caches and
    hidden files left out)."""
    return digest([[Path(r).name, tree_digest(r, skip_hidden=True)] for r in roots])


@functools.cache
def code_fingerprint() -> str:
    """Fingerprint of the installed ``calib`` and ``features`` packages (once per process)."""
    import calib
    import features

    return source_fingerprint([Path(calib.__file__).parent, Path(features.__file__).parent])


def _source_hash(cls: type) -> str:
    try:
        path = inspect.getsourcefile(cls)
        return sha256_file(Path(path)) if path else ""
    except (TypeError, OSError):
        return ""


def module_digest(module: str) -> str:
    """Contents of the top-level package (or module file) that holds ``module``, found without
    importing anything; ``"missing"`` when it cannot be found."""
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return "missing"
    if spec.submodule_search_locations:
        return digest([tree_digest(p, skip_hidden=True) for p in sorted(spec.submodule_search_locations)])
    return tree_digest(spec.origin) if spec.origin and os.path.exists(spec.origin) else "missing"


def stage_key(prev_key: str, stage: Stage, fit_key: str | None, on_system: str | None = None) -> str:
    """Cache key of a stage's output. ``fit_key`` (the fit clips' hash) only for stages that learn.

    The modules the stage's parameters name must be allowed (``--allow-import``) before their
    code is fingerprinted: :class:`features.ImportNotAllowedError` otherwise."""
    import features as F

    modules = list(stage.code_modules()) if hasattr(stage, "code_modules") else []
    F.check_imports_allowed(modules, f"the {stage.name} stage's parameters")
    paths = {name: tree_digest(getattr(stage, name)) for name in getattr(type(stage), "path_params", ())
             if getattr(stage, name, None)}
    # a stage wrapping another (calib.stages.gate) depends on all the wrapped one depends on:
    # its class's source, the files its path parameters name
    wrapped = stage.wrapped_stage() if hasattr(stage, "wrapped_stage") else None
    if wrapped is not None:
        paths["wrapped"] = stage_key("", wrapped, fit_key, None)
    return digest({
        "on": on_system,
        "prev": prev_key,
        "type": stage.name,
        "params": stage.get_params(),
        "code": code_fingerprint(),
        "stage_code": _source_hash(type(stage)),
        "modules": {m: module_digest(m) for m in modules},
        "paths": paths,
        "fit": fit_key if stage.learns else None,
    })[:32]


def _conformed(df: pl.DataFrame, kind: str | None) -> pl.DataFrame:
    """``df`` as :func:`calib.tables.read_table` gives it back from its file (conformed to its kind)."""
    return conform(df, kind, where="stage cache") if kind is not None else df


#: tables a chain re-adds from its inputs after reading an entry (run_chain), never stored
NOT_STORED = frozenset({"truth_clips"})


def _kind(name: str) -> str | None:
    return "detections" if name in ("detections", "systems") else (name if name in KINDS else None)


#: bytes of stage outputs a :class:`StageCache` also keeps in memory (``CALIB_STAGE_MEMORY_MIB``,
#: default 512; least recently used dropped first): the chains of a portfolio load what the
#: previous chain saved without reading Parquet back
MEMORY_BYTES = int(os.environ.get("CALIB_STAGE_MEMORY_MIB", "512")) * 2**20


def _copy(tables: Tables) -> Tables:
    """A new Tables of the same frames (callers add or replace entries of what load returns)."""
    return Tables({k: dict(v) if isinstance(v, dict) else v for k, v in tables.items()})


class StageCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        #: key -> (tables as a load from disk gives them, meta, bytes), least recently used first
        self._memory: dict[str, tuple[Tables, dict, int]] = {}
        #: id(table) -> (weak reference to it, file): where the tables this process has seen are
        #: stored (weak, so the cache does not keep every intermediate table alive)
        self.files: dict[int, tuple[weakref.ref, Path]] = {}
        #: file -> weak reference to the table last seen stored there: a load of an entry that
        #: refers to a file whose table is still alive (the inputs: gigabytes of GT points) takes
        #: that table instead of reading a second copy of it
        self._live: dict[Path, weakref.ref] = {}
        self._lock = threading.RLock()  # chains on threads (calib.score.parallel.thread_map) share it

    def remember(self, files: dict[int, tuple[pl.DataFrame, Path]]) -> None:
        for df, path in files.values():
            self._note(df, path)

    def _note(self, df: pl.DataFrame, path: Path) -> None:
        with self._lock:
            if len(self.files) > 4096:  # drop entries whose table is gone
                self.files = {k: v for k, v in self.files.items() if v[0]() is not None}
                self._live = {k: v for k, v in self._live.items() if v() is not None}
            self.files[id(df)] = (weakref.ref(df), path)
            self._live[Path(path)] = weakref.ref(df)

    def _stored(self, df: pl.DataFrame) -> Path | None:
        hit = self.files.get(id(df))
        return hit[1] if hit is not None and hit[0]() is df and hit[1].exists() else None

    def entry(self, key: str) -> Path:
        return self.root / "stages" / key

    def has(self, key: str) -> bool:
        return (self.entry(key) / MANIFEST).exists()

    def state_path(self, key: str) -> Path | None:
        """The folder of an entry's learned state, when it has one."""
        p = self.entry(key) / STATE
        return p if p.is_dir() else None

    def _hint(self, key: str) -> str:
        return f"a damaged or tampered cache entry: delete {self.entry(key)} and run again to recompute it"

    def restore(self, key: str, stage: Stage) -> Path:
        """Restore ``stage``'s learned state from entry ``key``; returns its state folder."""
        manifest = self._manifest(key)
        folder = self.state_path(key)
        if folder is None or manifest.get("state") != STATE:
            raise CacheEntryError(self.entry(key), f"the cached output of a {stage.name!r} stage has no learned "
                                  f"state ({self._hint(key)})")
        load_state(stage, folder, hint=self._hint(key))
        return folder

    # -- writing
    def save(self, key: str, tables: Tables, stage: Stage | None = None, meta: dict | None = None) -> None:
        if self.has(key):
            return
        make_dirs(self.root / "stages")
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root / "stages"))
        final = self.entry(key)
        written: list[tuple[pl.DataFrame, Path]] = []
        stored = Tables()  # the tables as read back from the files (conformed as read_table does)
        try:
            manifest: dict[str, Any] = {"tables": {}, "meta": meta or {}}
            for name, value in tables.items():
                if name in NOT_STORED:
                    continue
                if isinstance(value, dict):
                    stored[name] = {sub: self._as_stored(df, _kind(name)) for sub, df in value.items()}
                    manifest["tables"][name] = {
                        sub: self._save_table(df, tmp, final, f"{name}-{sub}", _kind(name), written)
                        for sub, df in value.items()}
                elif isinstance(value, pl.DataFrame):
                    stored[name] = self._as_stored(value, _kind(name))
                    manifest["tables"][name] = self._save_table(value, tmp, final, name, _kind(name), written)
                else:
                    raise TypeError(f"cannot cache table {name!r} of type {type(value).__name__}")
            if stage is not None and stage.learns:
                save_state(stage, tmp / STATE)
                manifest["state"] = STATE
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            for p in [tmp, *tmp.rglob("*")]:
                share_mode(p)
            try:
                os.rename(tmp, final)
            except OSError:  # another process stored the same key meanwhile: theirs is equal
                shutil.rmtree(tmp, ignore_errors=True)
                return
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for df, path in written:
            self._note(df, final / path.name)
        for name, value in stored.items():  # what memory serves refers to the same files
            pairs = ([(tables[name][sub], df) for sub, df in value.items()] if isinstance(value, dict)
                     else [(tables[name], value)])
            for orig, df in pairs:
                path = self._stored(orig)
                if df is not orig and path is not None:
                    self._note(df, path)
        self._keep(key, stored, json.loads(json.dumps(manifest["meta"], sort_keys=True)))

    def _as_stored(self, df: pl.DataFrame, kind: str | None) -> pl.DataFrame:
        """``df`` as a load of its file gives it: itself when it is a file already, else conformed."""
        return df if self._stored(df) is not None else _conformed(df, kind)

    def _keep(self, key: str, tables: Tables, meta: dict) -> None:
        with self._lock:
            size = sum(df.estimated_size() for df in tables.frames())
            if size > MEMORY_BYTES:
                return
            self._memory.pop(key, None)
            self._memory[key] = (tables, meta, size)
            total = sum(v[2] for v in self._memory.values())
            while total > MEMORY_BYTES:
                total -= self._memory.pop(next(iter(self._memory)))[2]

    def _save_table(self, df: pl.DataFrame, tmp: Path, final: Path, fname: str, kind: str | None,
                    written: list) -> str:
        stored = self._stored(df)
        if stored is not None:
            return str(stored.relative_to(self.root))
        path = tmp / f"{fname}.parquet"
        if kind is None:
            df.write_parquet(path)
        else:
            write_table(df, path, kind)
        written.append((df, path))
        return str((final / path.name).relative_to(self.root))

    # -- reading
    def _manifest(self, key: str) -> dict:
        path = self.entry(key) / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CacheEntryError(path, f"cannot be read ({e}; {self._hint(key)})") from None
        if (not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict)
                or manifest.get("state", STATE) != STATE):
            # e.g. "state": "state.joblib" from an older calib: never loaded (pickles run code)
            raise CacheEntryError(path, f"not a manifest this calib writes ({self._hint(key)})")
        return manifest

    def load(self, key: str) -> tuple[Tables, dict]:
        """(tables, meta) of a cached stage output (its learned state: :meth:`restore`): from
        memory when this process saved or loaded it lately and it is still on disk; a table whose
        file holds a table this process still has (the inputs the entry passed through: truth,
        systems) is that table, not a second copy read from the file."""
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None and self.has(key):
                self._memory[key] = self._memory.pop(key)  # most recently used
                return _copy(hit[0]), json.loads(json.dumps(hit[1]))
        manifest = self._manifest(key)
        tables = Tables()
        for name, ref in manifest["tables"].items():
            if isinstance(ref, dict):
                tables[name] = {sub: self._load_table(r, _kind(name), key) for sub, r in ref.items()}
            else:
                tables[name] = self._load_table(ref, _kind(name), key)
        meta = manifest.get("meta", {})
        self._keep(key, _copy(tables), json.loads(json.dumps(meta)))
        return tables, meta

    def _load_table(self, rel: Any, kind: str | None, key: str) -> pl.DataFrame:
        # a manifest names files inside the cache only (tables of this entry, earlier entries, inputs)
        parts = Path(rel).parts if isinstance(rel, str) else ()
        if (len(parts) < 2 or parts[0] not in ("stages", "inputs") or Path(rel).is_absolute()
                or any(p in ("", ".", "..") for p in parts) or not rel.endswith(".parquet")):
            raise CacheEntryError(self.entry(key) / MANIFEST, f"table file {rel!r} is not a Parquet file inside the "
                                  f"cache ({self._hint(key)})")
        path = self.root / rel
        live = self._live.get(path)
        df = live() if live is not None else None
        if df is not None and path.exists():
            return df  # the table stored in that file is in memory already: no second copy
        df = read_table(path, kind) if kind is not None else pl.read_parquet(path)
        self._note(df, path)
        return df
