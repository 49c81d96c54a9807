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
from typing import Any, Callable, Mapping

import polars as pl

from calib.constants import sha256_file
from calib.recipe.paths import make_dirs, share_mode
from calib.recipe.schema import Recipe, RecipeError
from calib.score.cache import StatDigests
from calib.stages.base import Tables
from calib.tables import read_table, table_clips, write_table


def digest(obj) -> str:
    """SHA-256 of a JSON-able object in canonical form."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


#: files hashed per thread at least before a second thread helps (hashlib leaves the GIL while
#: it hashes: 2 threads hash a dev set's 3.7 GB of JSON in about half the time)
HASH_FILES_PER_THREAD = 4


#: where a cache folder keeps the SHA-256 of the input files it has seen, under their stat signature
INPUT_DIGEST_INDEX = "sha256.json"
#: the input files' SHA-256s this process knows (a dev set's JSON: 3.7 GB hashed in 1.5-3 s on
#: two cores, which a warm re-run then skips)
INPUT_DIGESTS = StatDigests(lambda path: sha256_file(path), INPUT_DIGEST_INDEX)


def _files_key(files: list[tuple[str, Path]], index: Path | None = None) -> str:
    """The content key of some named files: their names and SHA-256s, hashed over as many threads
    as the command's ``--jobs`` (one without it), or read from ``index`` (a cache folder,
    :data:`INPUT_DIGESTS`) for files whose stat signature has not changed since."""
    from calib.score.parallel import gil_free_map

    sums = gil_free_map(lambda p: INPUT_DIGESTS.digest(p, index), [p for _, p in files],
                        min_per_thread=HASH_FILES_PER_THREAD)
    INPUT_DIGESTS.save(index)
    return digest([[name, h] for (name, _), h in zip(files, sums)])


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


@dataclass(frozen=True)
class Source:
    """What one input's path holds: its content ``key``, how to ``build`` its table (called only
    when the cache has no table under that key) and the clips its files name (``clips``, with the
    clips of prediction or GT files that hold no annotation)."""

    key: str
    build: Callable[[], pl.DataFrame]
    clips: frozenset[str] = frozenset()
    #: the GT's ``{clip: split}`` of every GT file, annotations or not (truth sources only)
    splits: Mapping[str, str] | None = None


#: rough in-process seconds of parsing a DCASE JSON file, per byte (bench_devscale.py: about 3 s
#: per 100 MB): the files are read over a pool only when they add up to POOL_MIN_SECONDS
INGEST_S_PER_BYTE = 3e-8


def file_mapper():
    """A map for :func:`calib.io.dcase.read_predictions` / ``read_truth`` over the workers of the
    enclosing :func:`calib.score.parallel.scale_out` block (``calib run --jobs 2``), or None (read
    here, one file after the other) outside one or for files too small to pay for a pool."""
    from calib.score.parallel import parallel_map, settings, use_pool

    s = settings()
    if not s.parallel:
        return None

    def run(fn, items: list[tuple]) -> list:
        est = INGEST_S_PER_BYTE * sum(os.stat(it[0]).st_size for it in items)
        par = s.par() if use_pool(len(items), est, jobs=s.jobs, backend=s.backend, reuses_pool=True) else {"jobs": 1}
        return parallel_map(fn, items, **par, desc="ingest", unit="file")

    return run


def _system_source(p: Path, name: str, where: str, recipe_source: str | None, progress: bool,
                   index: Path | None = None) -> Source:
    """A system: a detections .parquet (its rows of that system) or a folder of prediction JSON."""
    from calib.io.dcase import clip_name, ingest_predictions, prediction_files

    if p.suffix == ".parquet":
        return Source(digest(["parquet", name, sha256_file(p)]),
                      lambda: _system_from_table(read_table(p, "detections"), name, p, where, recipe_source),
                      frozenset(table_clips(p)))  # clips without rows too (calib.clips metadata)
    found = prediction_files([p])
    if not found:
        raise RecipeError(where, f"no prediction *.json files in {p}", recipe_source)
    return Source(digest(["json", name, _files_key([(f.name, f) for f in found], index)]),
                  lambda: ingest_predictions([p], system=name, progress=progress, map_files=file_mapper())[0],
                  frozenset(clip_name(f) for f in found))


def _truth_source(p: Path, inputs, progress: bool, index: Path | None = None) -> Source:
    """The GT: a truth .parquet or a folder of <seq>_std.json (split sub-folders allowed)."""
    from calib.io.dcase import clip_name, ingest_truth, truth_files

    if p.suffix == ".parquet":
        listed = table_clips(p)  # clips without rows too (calib.clips metadata)
        return Source(digest(["parquet", sha256_file(p)]), lambda: read_table(p, "truth"), frozenset(listed), listed)
    found = truth_files(p)
    splits = {clip_name(f): split for f, split in found}  # GT files with no annotation too
    return Source(digest(["json", _files_key([(f"{split}/{f.name}", f) for f, split in found], index)]),
                  lambda: ingest_truth(p, progress=progress, map_files=file_mapper())[0], frozenset(splits), splits)


def _teacher_source(p: Path, inputs, progress: bool, index: Path | None = None) -> Source:
    """SELD teacher outputs: a teacher .parquet, or a CSV file or folder (``teacher_format``)."""
    from calib.io.seld import read_teacher

    if p.suffix == ".parquet":
        return Source(digest(["parquet", sha256_file(p)]), lambda: read_table(p, "teacher"))
    found = sorted(p.glob("*.csv")) if p.is_dir() else [p]
    fmt = inputs.teacher_format
    return Source(digest(["csv", fmt, _files_key([(f.name, f) for f in found], index)]),
                  lambda: read_teacher([p], fmt=fmt)[0])


def _priors_source(p: Path, inputs, progress: bool, index: Path | None = None) -> Source:
    """Class priors per clip window: a CSV or Parquet file."""
    from calib.io.priors import read_priors

    return Source(digest(["priors", p.suffix, sha256_file(p)]), lambda: read_priors(p)[0])


@dataclass(frozen=True)
class InputKind:
    """One kind of recipe input besides the systems: the ``inputs.<field>`` path fills the table
    ``table`` (of calib table kind ``table``), read by ``source``; ``adds_clips``: its clips are
    clips of the run (the GT's are; a teacher's or the priors' are not)."""

    field: str
    table: str
    label: str
    source: Callable[..., Source]  # (path, the recipe's inputs, progress, index folder of file digests)
    adds_clips: bool = False


#: the inputs besides the systems, in the order they are read (schema.TABLE_INPUTS names the same)
INPUT_KINDS = (
    InputKind("gt", "truth", "gt", _truth_source, adds_clips=True),
    InputKind("teacher", "teacher", "teacher", _teacher_source),
    InputKind("priors", "priors", "priors", _priors_source),
)


def load_inputs(recipe: Recipe, base_dir: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                source: str | None = None, progress: bool = False,
                log: Callable[[str], None] = lambda s: None) -> LoadedInputs:
    """Read every input the recipe names (the systems, then :data:`INPUT_KINDS`). Relative paths
    resolve against ``base_dir``; ingested tables are cached under ``cache_dir`` by content key."""
    from calib.io.clipnames import is_safe_clip_name

    base = Path(base_dir)
    cache = Path(cache_dir) if cache_dir is not None else None
    index = cache / "inputs" if cache is not None else None  # the input files' remembered SHA-256s
    tables = Tables()
    keys: dict[str, str] = {}
    files: dict[int, tuple[pl.DataFrame, Path]] = {}
    clips: set[str] = set()

    def load(src: Source, name: str, kind: str, label: str) -> pl.DataFrame:
        df, path = _cached(cache, name, kind, src.key, src.build, log, label)
        if path is not None:  # stage outputs that keep this table refer to this file
            files[id(df)] = (df, path)
        return df

    systems: dict[str, pl.DataFrame] = {}
    for name, raw in recipe.inputs.systems.items():
        where = f"inputs.systems.{name}"
        if not is_safe_clip_name(name):  # it names cache files; Inputs.from_dict checks it too
            raise RecipeError("inputs.systems", f"system name {name!r} cannot name a file", source)
        src = _system_source(_resolve_path(raw, base, where, source), name, where, source, progress, index)
        systems[name] = df = load(src, f"system-{name}", "detections", f"system {name}")
        clips |= src.clips | set(df.get_column("clip").unique().to_list())
        keys[f"system:{name}"] = src.key
    tables["systems"] = systems
    tables["detections"] = systems[recipe.inputs.primary_system]
    keys["primary"] = recipe.inputs.primary_system

    for kind in INPUT_KINDS:
        raw = getattr(recipe.inputs, kind.field)
        if raw is None:
            continue
        src = kind.source(_resolve_path(raw, base, f"inputs.{kind.field}", source), recipe.inputs, progress, index)
        tables[kind.table] = df = load(src, kind.table, kind.table, kind.label)
        if src.splits is not None:
            tables["truth_clips"] = _truth_clips(src.splits, df)
        if kind.adds_clips:
            clips |= src.clips | set(df.get_column("clip").unique().to_list())
        keys[kind.table] = src.key
    return LoadedInputs(tables, keys, files, sorted(clips))


def _truth_clips(splits: Mapping[str, str], truth: pl.DataFrame) -> pl.DataFrame:
    """``clip, split`` of every GT clip: the source's files (a GT file with no annotation still
    makes its clip a scored clip, every detection there a false positive) and the rows' clips."""
    listed = pl.DataFrame({"clip": list(splits), "split": list(splits.values())},
                          schema={"clip": pl.String, "split": pl.String})
    rows = truth.select(pl.col("clip").cast(pl.String), pl.col("split").cast(pl.String)).unique()
    return pl.concat([rows, listed]).unique(subset="clip", keep="first").sort("clip")


def _system_from_table(df: pl.DataFrame, name: str, path: Path, where: str, source: str | None) -> pl.DataFrame:
    present = df.get_column("system").unique().sort().to_list() if len(df) else []
    if len(present) > 1:
        if name not in present:
            raise RecipeError(where, f"{path} holds systems {present}; none is named {name!r}", source)
        df = df.filter(pl.col("system") == name)
    return df.with_columns(pl.lit(name, pl.String).alias("system"))
