"""Loading a recipe's inputs into :class:`~calib.stages.base.Tables`, keyed by content.

Each input's key is the SHA-256 of its files' names and contents, so the stage cache stays valid
when the data folder moves and is invalidated when any byte changes. Ingested tables are cached
under ``CACHE/inputs/`` by that key: parsing large JSON folders happens once.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from calib.recipe.paths import make_dirs, share_mode
from calib.recipe.schema import Recipe, RecipeError
from calib.stages.base import Tables
from calib.tables import read_table, table_clips, write_table


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest(obj) -> str:
    """SHA-256 of a JSON-able object in canonical form."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _files_key(files: list[tuple[str, Path]]) -> str:
    return digest([[name, sha256_file(p)] for name, p in files])


@dataclass
class LoadedInputs:
    tables: Tables
    #: input name (``system:<name>``, ``truth``, ``teacher``, ``priors``) -> content key
    keys: dict[str, str]
    #: id of an input table -> (table, its Parquet file in the cache), so stage outputs that leave
    #: a table unchanged refer to this file instead of writing a copy
    files: dict[int, tuple[pl.DataFrame, Path]] = field(default_factory=dict)
    #: every clip an input mentions, including prediction files with no annotations
    clips: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return digest(self.keys)


def _resolve_path(raw: str, base: Path, where: str, source: str | None) -> Path:
    p = Path(os.path.expanduser(raw))
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise RecipeError(where, f"input {raw!r} not found (looked at {p})", source)
    return p


def _cached(cache_dir: Path | None, name: str, kind: str, key: str, build: Callable[[], pl.DataFrame],
            log: Callable[[str], None], label: str) -> tuple[pl.DataFrame, Path | None]:
    if cache_dir is None:
        return build(), None
    path = cache_dir / "inputs" / f"{name}-{key[:32]}.parquet"
    if path.exists():
        log(f"input {label}: cached")
        return read_table(path, kind), path
    df = build()
    make_dirs(path.parent)
    share_mode(write_table(df, path, kind))  # a cache file: never writable by others, whatever the umask
    return df, path


def load_inputs(recipe: Recipe, base_dir: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                source: str | None = None, progress: bool = False,
                log: Callable[[str], None] = lambda s: None) -> LoadedInputs:
    """Read every input the recipe names. Relative paths resolve against ``base_dir``."""
    from calib.io.dcase import clip_name, ingest_predictions, ingest_truth, prediction_files, truth_files

    base = Path(base_dir)
    cache = Path(cache_dir) if cache_dir is not None else None
    tables = Tables()
    keys: dict[str, str] = {}
    files: dict[int, tuple[pl.DataFrame, Path]] = {}

    def remember(df, path):
        if path is not None:
            files[id(df)] = (df, path)

    systems: dict[str, pl.DataFrame] = {}
    clips: set[str] = set()
    from calib.io.clipnames import is_safe_clip_name

    for name, raw in recipe.inputs.systems.items():
        where = f"inputs.systems.{name}"
        if not is_safe_clip_name(name):  # it names cache files; Inputs.from_dict checks it too
            raise RecipeError("inputs.systems", f"system name {name!r} cannot name a file", source)
        p = _resolve_path(raw, base, where, source)
        if p.suffix == ".parquet":
            key = digest(["parquet", name, sha256_file(p)])

            def build(p=p, name=name, where=where):
                return _system_from_table(read_table(p, "detections"), name, p, where, source)
        else:
            found = prediction_files([p])
            if not found:
                raise RecipeError(where, f"no prediction *.json files in {p}", source)
            key = digest(["json", name, _files_key([(f.name, f) for f in found])])
            clips |= {clip_name(f) for f in found}

            def build(p=p, name=name):
                return ingest_predictions([p], system=name, progress=progress)[0]
        if p.suffix == ".parquet":
            clips |= set(table_clips(p))  # clips without rows too (calib.clips metadata)
        df, path = _cached(cache, f"system-{name}", "detections", key, build, log, f"system {name}")
        systems[name] = df
        clips |= set(df.get_column("clip").unique().to_list())
        keys[f"system:{name}"] = key
        remember(df, path)
    primary = recipe.inputs.primary_system
    tables["systems"] = systems
    tables["detections"] = systems[primary]
    keys["primary"] = primary

    if recipe.inputs.gt is not None:
        p = _resolve_path(recipe.inputs.gt, base, "inputs.gt", source)
        if p.suffix == ".parquet":
            key = digest(["parquet", sha256_file(p)])
            build = lambda p=p: read_table(p, "truth")  # noqa: E731
            clips |= set(table_clips(p))
        else:
            found = truth_files(p)
            clips |= {clip_name(f) for f, _ in found}  # GT files with no annotation too
            key = digest(["json", _files_key([(f"{split}/{f.name}", f) for f, split in found])])
            build = lambda p=p: ingest_truth(p, progress=progress)[0]  # noqa: E731
        df, path = _cached(cache, "truth", "truth", key, build, log, "gt")
        tables["truth"] = df
        clips |= set(df.get_column("clip").unique().to_list())
        keys["truth"] = key
        remember(df, path)

    if recipe.inputs.teacher is not None:
        from calib.io.seld import read_teacher

        p = _resolve_path(recipe.inputs.teacher, base, "inputs.teacher", source)
        fmt = recipe.inputs.teacher_format
        if p.suffix == ".parquet":
            key = digest(["parquet", sha256_file(p)])
            build = lambda p=p: read_table(p, "teacher")  # noqa: E731
        else:
            found = sorted(p.glob("*.csv")) if p.is_dir() else [p]
            key = digest(["csv", fmt, _files_key([(f.name, f) for f in found])])
            build = lambda p=p: read_teacher([p], fmt=fmt)[0]  # noqa: E731
        df, path = _cached(cache, "teacher", "teacher", key, build, log, "teacher")
        tables["teacher"] = df
        keys["teacher"] = key
        remember(df, path)

    if recipe.inputs.priors is not None:
        from calib.io.priors import read_priors

        p = _resolve_path(recipe.inputs.priors, base, "inputs.priors", source)
        key = digest(["priors", p.suffix, sha256_file(p)])
        df, path = _cached(cache, "priors", "priors", key, lambda p=p: read_priors(p)[0], log, "priors")
        tables["priors"] = df
        keys["priors"] = key
        remember(df, path)
    return LoadedInputs(tables, keys, files, sorted(clips))


def _system_from_table(df: pl.DataFrame, name: str, path: Path, where: str, source: str | None) -> pl.DataFrame:
    present = df.get_column("system").unique().sort().to_list() if len(df) else []
    if len(present) > 1:
        if name not in present:
            raise RecipeError(where, f"{path} holds systems {present}; none is named {name!r}", source)
        df = df.filter(pl.col("system") == name)
    return df.with_columns(pl.lit(name, pl.String).alias("system"))


def subset(tables: Tables, clips) -> Tables:
    """The tables restricted to ``clips`` (every table has a ``clip`` column)."""
    keep = pl.col("clip").is_in(sorted(clips))
    out = Tables()
    for name, value in tables.items():
        if isinstance(value, dict):
            out[name] = {k: v.filter(keep) for k, v in value.items()}
        elif isinstance(value, pl.DataFrame) and "clip" in value.columns:
            out[name] = value.filter(keep)
        else:
            out[name] = value
    return out
