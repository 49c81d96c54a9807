"""The chain of a recipe: its enabled stages (and emitter) run in order on the input tables.

Stages that learn are fit on the ``fit`` clips (their tables restricted to those clips) and applied
to every clip without the ground truth, so scores on clips they were not fit on are honest; stages
that do not learn are applied to every clip. A gated entry (``gate = "per_class"``) runs as a
:class:`~calib.stages.gate.GatedStage`. Every stage's output is cached by its key (previous key,
stage, parameters, code, fit clips: :mod:`calib.recipe.cache`), so a re-run resumes after the last
stage whose output is cached. What the run writes (files, metrics, report) is
:mod:`calib.recipe.outputs`; :mod:`calib.recipe.runner` puts the two together.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from calib.recipe.cache import StageCache, stage_key
from calib.recipe.inputs import digest
from calib.recipe.schema import Recipe, RecipeError
from calib.stages.base import Stage, Tables
from calib.tables import conform

Log = Callable[[str], None]


@dataclass
class StageRecord:
    """What happened to one stage in a run."""

    path: str  # stages[2] or emit
    address: str
    type: str
    params: dict
    key: str
    learns: bool
    cached: bool = False
    fit_clips: int | None = None
    seconds: float = 0.0
    rows: int = 0
    on_system: str | None = None
    gate: str | None = None  # "per_class" / "global" when the stage is gated
    kept_classes: list[int] | None = None  # a gated stage: the classes it acts on

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class ChainResult:
    tables: Tables
    records: list[StageRecord]
    stages: list[Stage]  # fitted; state restored from the cache where a stage was not re-run
    key: str  # key of the final output
    state_files: dict[str, Path] = field(default_factory=dict)  # path -> cached state folder of learned stages


def clip_sets(recipe: Recipe, tables: Tables, source: str | None = None) -> tuple[list[str], list[str]]:
    """(fit clips, evaluate clips) from the recipe's GT split folders."""
    clips: set[str] = set(tables.detections.get_column("clip").unique().to_list())
    for df in tables.systems.values():
        clips |= set(df.get_column("clip").unique().to_list())
    if tables.truth is None:
        return sorted(clips), []
    truth = tables.truth_clips  # GT files without annotations too: their detections are false positives
    present = sorted(truth.get_column("split").unique().to_list())
    chosen = {}
    for which in ("fit", "evaluate"):
        names = getattr(recipe.splits, which)
        for i, s in enumerate(names):
            if s not in present:
                shown = [p or '""' for p in present]
                raise RecipeError(f"splits.{which}[{i}]", f"no GT split {s!r}; the GT has {', '.join(shown)}", source)
        sel = truth if not names else truth.filter(pl.col("split").is_in(names))
        chosen[which] = sorted(sel.get_column("clip").unique().to_list())
    return chosen["fit"], chosen["evaluate"]


def _rows(tables: Tables) -> int:
    det = tables.get("detections")
    return len(det) if det is not None else 0


def _normalize(tables: Tables, before: Tables, where: str) -> Tables:
    """Core columns first, in schema types, for the tables the stage changed: cached and fresh
    outputs then look the same. Tables the stage passed through keep their identity (the cache
    refers to the file that already holds them instead of writing a copy)."""
    out = Tables(tables)
    if "detections" in out and out["detections"] is not before.get("detections"):
        out["detections"] = conform(out["detections"], "detections", where=f"{where} output")
    if out.systems:
        old = before.systems
        out["systems"] = {k: v if v is old.get(k) else conform(v, "detections", where=f"{where} output systems.{k}")
                          for k, v in out.systems.items()}
    return out


def check_imports(recipe: Recipe, source: str | None = None, stages: list[Stage] | None = None) -> None:
    """Refuse, before anything runs or is written, a recipe whose stages name modules to import
    (``feature_modules``) that the user has not allowed: a recipe is data."""
    import features as F

    chain = recipe.chain()
    for st, (path, spec) in zip(stages or [spec.build(recipe.scoring) for _, spec in chain], chain):
        for module in st.code_modules():
            if not F.is_import_allowed(module):
                raise RecipeError(path, f"stage {spec.type!r} names the module {module!r} to import; a recipe is data "
                                  f"and cannot import code by itself: pass --allow-import {module} if you trust it, "
                                  f"or install it with a {F.ENTRY_POINT_GROUP!r} entry point", source)


def run_chain(recipe: Recipe, tables: Tables, input_key: str, *, fit_clips: Iterable[str],
              cache: StageCache | None = None, log: Log = lambda s: None, source: str | None = None) -> ChainResult:
    """Run the recipe's enabled stages (and emitter) on ``tables``, resuming from the cache.

    Modules a stage's parameters name (``feature_modules``) must have been allowed
    (:func:`features.allowed_imports`, ``--allow-import``): a :class:`RecipeError` naming the stage
    otherwise, before anything runs. ``source``: the recipe file, for messages. Emitted detections
    are kept beside the stage cache (``CACHE/emitted``, :mod:`calib.stages.emit.cache`), so chains
    that emit the same detections (variants, folds) emit each of them once."""
    from calib.stages.emit.cache import stored_in

    with stored_in(cache.root / "emitted" if cache is not None else None):
        return _run_chain(recipe, tables, input_key, fit_clips=fit_clips, cache=cache, log=log, source=source)


def _run_chain(recipe: Recipe, tables: Tables, input_key: str, *, fit_clips: Iterable[str],
               cache: StageCache | None, log: Log, source: str | None) -> ChainResult:
    fit_clips = sorted(set(fit_clips))
    fit_key = digest(fit_clips)
    chain = recipe.chain()
    stages = [spec.build(recipe.scoring) for _, spec in chain]  # a gated stage scores as the recipe does
    check_imports(recipe, source, stages)
    keys: list[str] = []
    prev = input_key
    for st, (_, spec) in zip(stages, chain):
        prev = stage_key(prev, st, fit_key, spec.on_system)
        keys.append(prev)
    records = [StageRecord(path, "emit" if path == "emit" else spec.address, spec.type, st.get_params(), k, st.learns,
                           on_system=spec.on_system, gate=spec.gate if spec.gated else None)
               for (path, spec), st, k in zip(chain, stages, keys)]
    n = len(stages)
    start = 0
    state_files: dict[str, Path] = {}
    if cache is not None:
        for j in range(n - 1, -1, -1):
            if cache.has(keys[j]):
                tables_j, _ = cache.load(keys[j])
                for name in ("truth", "truth_clips"):
                    if name in tables:
                        tables_j[name] = tables[name]
                tables = tables_j
                start = j + 1
                break
        for j in range(start):
            records[j].cached = True
            if stages[j].learns:
                state_files[records[j].path] = cache.restore(keys[j], stages[j])
            _note_gate(records[j], stages[j])
            log(f"[{j + 1}/{n}] {records[j].address} ({records[j].type}): cached{_gate_text(records[j])}")
        if start:
            records[start - 1].rows = _rows(tables)
    from calib.score.parallel import progress

    # handed over, not kept here: a table read from the cache is let go once the stage after it
    # has replaced it (a dev set's detections with their points are gigabytes)
    handed = [tables]
    del tables
    tables_j = None
    with progress(range(start, n), desc=f"{recipe.name}: stages", unit="stage") as bar:
        return _run_stages(recipe, handed, stages, records, chain, keys, fit_clips, cache, log, state_files, bar,
                           input_key)


def _run_stages(recipe, handed: list, stages, records, chain, keys, fit_clips, cache, log, state_files, bar,
                input_key) -> ChainResult:
    """The stages from the first one not cached on (``bar`` iterates their indices) on the tables
    ``handed`` holds (taken out of it: nothing else keeps them once a stage replaced them)."""
    tables = handed.pop()
    n = len(stages)
    truth = tables.get("truth")
    for i in bar:
        st, rec, on = stages[i], records[i], chain[i][1].on_system
        t0 = time.perf_counter()
        try:
            # A stage on a named system sees that system's table as its detections; its output
            # replaces that system's table, the working detections stay as they were.
            view = tables if on is None else tables.replace(detections=tables.systems[on])
            if st.learns:
                st.fit(view.subset(fit_clips))
                rec.fit_clips = len(fit_clips)
                # Applied without the ground truth: a fitted stage cannot peek at held-out labels.
                out = st.apply(view.without_truth())
                if truth is not None:
                    out = out.replace(truth=truth)
            else:
                out = st.fit(view).apply(view)
            if not isinstance(out, dict):
                raise TypeError(f"apply returned {type(out).__name__}, not Tables")
            out = Tables(out)
            if on is not None:
                systems = out.systems or tables.systems
                systems[on] = out["detections"]
                out = out.replace(systems=systems, detections=tables["detections"])
            out = _normalize(out, tables, f"{rec.path} ({rec.type})")
        except Exception as e:
            e.add_note(f"while running {rec.path} ({rec.type}) of recipe {recipe.name!r}")
            raise
        tables = out
        rec.seconds = time.perf_counter() - t0
        rec.rows = len(tables.systems[on]) if on else _rows(tables)
        if cache is not None and st.cache_output:
            cache.save(rec.key, tables, st, meta={"path": rec.path, "type": rec.type, "params": rec.params})
            sp = cache.state_path(rec.key)
            if sp is not None:
                state_files[rec.path] = sp
        _note_gate(rec, st)
        what = (f"on system {on}, " if on else "") + (f"fit on {rec.fit_clips} clips, " if st.learns else "")
        log(f"[{i + 1}/{n}] {rec.address} ({rec.type}): {what}{rec.seconds:.2f} s, {rec.rows} detections"
            f"{_gate_text(rec)}")
    return ChainResult(tables, records, stages, keys[-1] if keys else input_key, state_files)


def _note_gate(rec: StageRecord, st: Stage) -> None:
    if rec.gate is not None and hasattr(st, "kept_classes_"):
        rec.kept_classes = [int(c) for c in st.kept_classes_]


def _gate_text(rec: StageRecord) -> str:
    if rec.gate is None or rec.kept_classes is None:
        return ""
    kept = ", ".join(map(str, rec.kept_classes)) or "none"
    return f"; gate {rec.gate}: applied to class(es) {kept}"
