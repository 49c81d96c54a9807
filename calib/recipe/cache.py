"""The stage cache: every stage's output tables as Parquet under a content key.

A stage's key is the hash of (previous key, stage type, its full parameters, its module's source,
and for stages that learn, the clips they are fit on); the first previous key is the inputs'
content key. Keys can therefore be computed before anything runs, and a re-run resumes from the
last stage whose key is cached: changing one parameter recomputes that stage and the ones after it.

An entry ``CACHE/stages/<key>/`` holds ``manifest.json`` (table name -> Parquet file, relative to
the cache root), the Parquet files of the tables the stage changed (unchanged ones point at the
file that already holds them) and, for fitted stages, ``state.joblib`` (the learned attributes).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import polars as pl

from calib.recipe.inputs import digest
from calib.stages.base import Stage, Tables
from calib.tables import KINDS, read_table, write_table

MANIFEST = "manifest.json"
STATE = "state.joblib"


def _source_hash(cls: type) -> str:
    try:
        path = inspect.getsourcefile(cls)
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""
    except (TypeError, OSError):
        return ""


def stage_key(prev_key: str, stage: Stage, fit_key: str | None, on_system: str | None = None) -> str:
    """Cache key of a stage's output. ``fit_key`` (the fit clips' hash) only for stages that learn."""
    return digest({
        "on": on_system,
        "prev": prev_key,
        "type": stage.name,
        "params": stage.get_params(),
        "code": _source_hash(type(stage)),
        "fit": fit_key if stage.learns else None,
    })[:32]


def learned_state(stage: Stage) -> dict[str, Any]:
    """The attributes ``fit`` learned (public names ending in ``_``)."""
    return {k: v for k, v in vars(stage).items() if k.endswith("_") and not k.startswith("_")}


def restore_state(stage: Stage, state: dict[str, Any]) -> Stage:
    for k, v in state.items():
        setattr(stage, k, v)
    return stage


def _kind(name: str) -> str | None:
    return "detections" if name in ("detections", "systems") else (name if name in KINDS else None)


class StageCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        #: id(table) -> (weak reference to it, file): where the tables this process has seen are
        #: stored (weak, so the cache does not keep every intermediate table alive)
        self.files: dict[int, tuple[weakref.ref, Path]] = {}

    def remember(self, files: dict[int, tuple[pl.DataFrame, Path]]) -> None:
        for df, path in files.values():
            self._note(df, path)

    def _note(self, df: pl.DataFrame, path: Path) -> None:
        if len(self.files) > 4096:  # drop entries whose table is gone
            self.files = {k: v for k, v in self.files.items() if v[0]() is not None}
        self.files[id(df)] = (weakref.ref(df), path)

    def _stored(self, df: pl.DataFrame) -> Path | None:
        hit = self.files.get(id(df))
        return hit[1] if hit is not None and hit[0]() is df and hit[1].exists() else None

    def entry(self, key: str) -> Path:
        return self.root / "stages" / key

    def has(self, key: str) -> bool:
        return (self.entry(key) / MANIFEST).exists()

    def state_path(self, key: str) -> Path | None:
        p = self.entry(key) / STATE
        return p if p.exists() else None

    # -- writing
    def save(self, key: str, tables: Tables, stage: Stage | None = None, meta: dict | None = None) -> None:
        if self.has(key):
            return
        (self.root / "stages").mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root / "stages"))
        final = self.entry(key)
        written: list[tuple[pl.DataFrame, Path]] = []
        try:
            manifest: dict[str, Any] = {"tables": {}, "meta": meta or {}}
            for name, value in tables.items():
                if isinstance(value, dict):
                    manifest["tables"][name] = {
                        sub: self._save_table(df, tmp, final, f"{name}-{sub}", _kind(name), written)
                        for sub, df in value.items()}
                elif isinstance(value, pl.DataFrame):
                    manifest["tables"][name] = self._save_table(value, tmp, final, name, _kind(name), written)
                else:
                    raise TypeError(f"cannot cache table {name!r} of type {type(value).__name__}")
            if stage is not None and stage.learns:
                import joblib

                joblib.dump(learned_state(stage), tmp / STATE)
                manifest["state"] = STATE
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
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
    def load(self, key: str) -> tuple[Tables, dict | None, dict]:
        """(tables, learned state or None, meta) of a cached stage output."""
        manifest = json.loads((self.entry(key) / MANIFEST).read_text())
        tables = Tables()
        for name, ref in manifest["tables"].items():
            if isinstance(ref, dict):
                tables[name] = {sub: self._load_table(r, _kind(name)) for sub, r in ref.items()}
            else:
                tables[name] = self._load_table(ref, _kind(name))
        state = None
        if manifest.get("state"):
            import joblib

            state = joblib.load(self.entry(key) / manifest["state"])
        return tables, state, manifest.get("meta", {})

    def _load_table(self, rel: str, kind: str | None) -> pl.DataFrame:
        path = self.root / rel
        df = read_table(path, kind) if kind is not None else pl.read_parquet(path)
        self._note(df, path)
        return df
