"""Running a recipe: inputs -> stages (cached) -> emitted detections -> DCASE files, metrics, report.

Stages that learn are fit on the ``fit`` clips (their tables restricted to those clips) and applied
to every clip, without the ground truth, so scores on clips they were not fit on are honest.
Stages that do not learn are applied to every clip.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from calib.recipe.cache import StageCache, stage_key
from calib.recipe.inputs import LoadedInputs, digest, load_inputs, subset
from calib.recipe.paths import make_dirs
from calib.recipe.schema import Recipe, RecipeError
from calib.recipe.state import save_state
from calib.recipe.scoring import Scorer, headline, restrict
from calib.stages.base import Stage, Tables
from calib.stages.emit.cache import stored_in
from calib.tables import conform, write_table

Log = Callable[[str], None]
#: the files run_recipe may write in OUT; those a run does not write are removed from OUT
RUN_OUTPUTS = ("recipe.toml", "detections.parquet", "metrics.json", "metrics_per_split.json", "run.json", "report.md")


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
    clips: set[str] = set(tables["detections"].get_column("clip").unique().to_list())
    for df in (tables.get("systems") or {}).values():
        clips |= set(df.get_column("clip").unique().to_list())
    truth = tables.get("truth")
    if truth is None:
        return sorted(clips), []
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
    if isinstance(out.get("systems"), dict):
        old = before.get("systems") or {}
        out["systems"] = {k: v if v is old.get(k) else conform(v, "detections", where=f"{where} output systems.{k}")
                          for k, v in out["systems"].items()}
    return out


def check_imports(recipe: Recipe, source: str | None = None, stages: list[Stage] | None = None) -> None:
    """Refuse, before anything runs or is written, a recipe whose stages name modules to import
    (``feature_modules``) that the user has not allowed: a recipe is data."""
    import features as F

    chain = recipe.chain()
    for st, (path, spec) in zip(stages or [spec.build() for _, spec in chain], chain):
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
    with stored_in(cache.root / "emitted" if cache is not None else None):
        return _run_chain(recipe, tables, input_key, fit_clips=fit_clips, cache=cache, log=log, source=source)


def _run_chain(recipe: Recipe, tables: Tables, input_key: str, *, fit_clips: Iterable[str],
               cache: StageCache | None, log: Log, source: str | None) -> ChainResult:
    fit_clips = sorted(set(fit_clips))
    fit_key = digest(fit_clips)
    chain = recipe.chain()
    stages = [spec.build() for _, spec in chain]
    check_imports(recipe, source, stages)
    keys: list[str] = []
    prev = input_key
    for st, (_, spec) in zip(stages, chain):
        prev = stage_key(prev, st, fit_key, spec.on_system)
        keys.append(prev)
    records = [StageRecord(path, "emit" if path == "emit" else spec.address, spec.type, st.get_params(), k, st.learns,
                           on_system=spec.on_system) for (path, spec), st, k in zip(chain, stages, keys)]
    n = len(stages)
    start = 0
    state_files: dict[str, Path] = {}
    if cache is not None:
        for j in range(n - 1, -1, -1):
            if cache.has(keys[j]):
                tables_j, _ = cache.load(keys[j])
                if "truth" in tables:
                    tables_j["truth"] = tables["truth"]
                tables = tables_j
                start = j + 1
                break
        for j in range(start):
            records[j].cached = True
            if stages[j].learns:
                state_files[records[j].path] = cache.restore(keys[j], stages[j])
            log(f"[{j + 1}/{n}] {records[j].address} ({records[j].type}): cached")
        if start:
            records[start - 1].rows = _rows(tables)
    truth = tables.get("truth")
    for i in range(start, n):
        st, rec, on = stages[i], records[i], chain[i][1].on_system
        t0 = time.perf_counter()
        try:
            # A stage on a named system sees that system's table as its detections; its output
            # replaces that system's table, the working detections stay as they were.
            view = tables if on is None else tables.replace(detections=tables["systems"][on])
            if st.learns:
                st.fit(subset(view, fit_clips))
                rec.fit_clips = len(fit_clips)
                # Applied without the ground truth: a fitted stage cannot peek at held-out labels.
                blind = Tables({k: v for k, v in view.items() if k != "truth"})
                out = st.apply(blind)
                if truth is not None:
                    out = out.replace(truth=truth)
            else:
                out = st.fit(view).apply(view)
            if not isinstance(out, dict):
                raise TypeError(f"apply returned {type(out).__name__}, not Tables")
            out = Tables(out)
            if on is not None:
                systems = dict(out.get("systems") or tables["systems"])
                systems[on] = out["detections"]
                out = out.replace(systems=systems, detections=tables["detections"])
            out = _normalize(out, tables, f"{rec.path} ({rec.type})")
        except Exception as e:
            e.add_note(f"while running {rec.path} ({rec.type}) of recipe {recipe.name!r}")
            raise
        tables = out
        rec.seconds = time.perf_counter() - t0
        rec.rows = len(tables["systems"][on]) if on else _rows(tables)
        if cache is not None:
            cache.save(rec.key, tables, st, meta={"path": rec.path, "type": rec.type, "params": rec.params})
            sp = cache.state_path(rec.key)
            if sp is not None:
                state_files[rec.path] = sp
        what = (f"on system {on}, " if on else "") + (f"fit on {rec.fit_clips} clips, " if st.learns else "")
        log(f"[{i + 1}/{n}] {rec.address} ({rec.type}): {what}{rec.seconds:.2f} s, {rec.rows} detections")
    return ChainResult(tables, records, stages, keys[-1] if keys else input_key, state_files)


# ----------------------------------------------------------------------------------------------
@dataclass
class RunOutput:
    out_dir: Path
    chain: ChainResult
    metrics: dict | None
    split_metrics: dict[str, dict]
    fit_clips: list[str]
    eval_clips: list[str]
    files: dict[str, int]  # exported DCASE file name -> bytes


def _default_scorer() -> Scorer:
    from calib.recipe.scoring import official_scorer

    return official_scorer


def run_recipe(recipe: Recipe, out_dir: str | os.PathLike, *, base_dir: str | os.PathLike,
               cache_dir: str | os.PathLike | None = None, scorer: Scorer | None = None,
               source: str | None = None, log: Log = print, progress: bool = False, score: bool = True,
               allow_imports: Iterable[str] = ()) -> RunOutput:
    """Run a recipe and write OUT/{recipe.toml, detections.parquet, dcase/, state/, metrics.json,
    run.json, report.md}. Outputs are staged and moved into place only when everything succeeded.

    ``allow_imports``: modules the recipe may name for import (``--allow-import``); a recipe naming
    any other is refused before anything is written."""
    import features as F

    with F.allowed_imports(allow_imports):
        check_imports(recipe, source)
        return _run_recipe(recipe, Path(out_dir), base_dir=base_dir, cache_dir=cache_dir, scorer=scorer,
                           source=source, log=log, progress=progress, score=score)


def _run_recipe(recipe: Recipe, out: Path, *, base_dir, cache_dir, scorer: Scorer | None, source: str | None,
                log: Log, progress: bool, score: bool) -> RunOutput:
    from calib.io.dcase import MAX_FILE_BYTES
    from calib.recipe.io import dump_recipe

    make_dirs(out)
    cache = StageCache(cache_dir if cache_dir is not None else out / ".cache")
    loaded: LoadedInputs = load_inputs(recipe, base_dir, cache_dir=cache.root, source=source, progress=progress, log=log)
    cache.remember(loaded.files)
    tables = loaded.tables
    fit_clips, eval_clips = clip_sets(recipe, tables, source)
    log(f"recipe {recipe.name!r}: {len(recipe.chain())} stage(s); fit on {len(fit_clips)} clip(s), "
        f"score {len(eval_clips)} clip(s)")
    chain = run_chain(recipe, tables, loaded.key, fit_clips=fit_clips, cache=cache, log=log, source=source)
    det = chain.tables["detections"]

    metrics, split_metrics = None, {}
    truth = tables.get("truth")
    if score and truth is not None and eval_clips:
        scorer = scorer or _default_scorer()
        t0 = time.perf_counter()
        metrics = scorer(restrict(det, eval_clips), restrict(truth, eval_clips), recipe.scoring)
        splits = recipe.splits.evaluate or sorted(truth.get_column("split").unique().to_list())
        if len(splits) > 1:
            for s in splits:
                clips = truth.filter(pl.col("split") == s).get_column("clip").unique().to_list()
                split_metrics[s] = scorer(restrict(det, clips), restrict(truth, clips), recipe.scoring)
        h = headline(metrics)
        log(f"scored {len(eval_clips)} clip(s) ({recipe.scoring.protocol}) in {time.perf_counter() - t0:.2f} s: "
            f"mAP {h['mAP']:.4f}, Pearson {h['pearson']:.4f}")

    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        dump_recipe(recipe, staging / "recipe.toml")
        write_table(det, staging / "detections.parquet", "detections", recipe_hash=digest(recipe.to_dict()),
                    clips=loaded.clips)
        files = export_clips(det, staging / "dcase", loaded.clips, max_bytes=None)
        sizes = {f.name: f.stat().st_size for f in files}
        over = sorted(n for n, b in sizes.items() if b > MAX_FILE_BYTES)
        if over:
            log(f"warning: {len(over)} DCASE file(s) over the 20 MiB limit (e.g. {over[0]}); not submittable as is")
        (staging / "state").mkdir()
        for i, (rec, st) in enumerate(zip(chain.records, chain.stages)):
            if not rec.learns:
                continue
            dest = staging / "state" / f"{i:02d}-{rec.address}"  # address: a checked path component
            if rec.path in chain.state_files:
                shutil.copytree(chain.state_files[rec.path], dest)
            else:
                save_state(st, dest)
        if metrics is not None:
            _write_json(staging / "metrics.json", metrics)
        if split_metrics:
            _write_json(staging / "metrics_per_split.json", split_metrics)
        run_info = {
            "recipe": recipe.name, "inputs": loaded.keys, "final_key": chain.key,
            "fit_clips": fit_clips, "evaluate_clips": eval_clips,
            "stages": [r.to_dict() for r in chain.records],
            "files": {"count": len(sizes), "total_bytes": sum(sizes.values()), "max_bytes": max(sizes.values(), default=0),
                      "over_limit": over},
        }
        _write_json(staging / "run.json", run_info)
        (staging / "report.md").write_text(run_report(recipe, chain, metrics, split_metrics, fit_clips, eval_clips, sizes))
        written = {item.name for item in staging.iterdir()}
        for item in sorted(staging.iterdir()):
            dest = out / item.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(item, dest)
        # An output this run did not write (metrics after --no-score) is a previous run's: remove it,
        # so nothing in OUT describes other detections than OUT/detections.parquet.
        for name in set(RUN_OUTPUTS) - written:
            if (out / name).is_file():
                (out / name).unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"wrote {out}: detections.parquet, dcase/ ({len(sizes)} files), "
        f"{'metrics.json, ' if metrics is not None else ''}report.md")
    return RunOutput(out, chain, metrics, split_metrics, fit_clips, eval_clips, sizes)


def check_clip_values(names: Iterable, where: str) -> None:
    """An :class:`~calib.io.errors.InputError` naming the first clip of ``names`` that cannot be a
    file name (see :mod:`calib.io.clipnames`) and how many there are."""
    from calib.io.clipnames import RULE, is_safe_clip_name
    from calib.io.errors import InputError

    bad = [c for c in names if not is_safe_clip_name(c)]
    if bad:
        raise InputError(where, f"unsafe clip name {bad[0]!r}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                         + f": {RULE}; nothing was written")


def export_clips(det: pl.DataFrame, out_dir: str | os.PathLike, clips: Iterable[str], *,
                 max_bytes: int | None) -> list[Path]:
    """One ``<clip>.json`` per clip of ``clips`` (an empty annotation list where a clip has no
    detections: a missing file would drop that clip's GT from the official scoring) plus any clip
    of ``det`` not listed."""
    from calib.io.dcase import dumps_clip, export_table

    # every clip name becomes a file name: all are checked before the first file is written
    clips = list(clips)
    check_clip_values(det.get_column("clip").unique().sort().to_list(), "the detections table")
    check_clip_values(clips, "the clip list")
    out_dir = Path(out_dir)
    files = export_table(det, out_dir, "pred", max_bytes=max_bytes, progress=False) if len(det) else []
    have = {f.stem for f in files}
    out_dir.mkdir(parents=True, exist_ok=True)
    empty = dumps_clip(det.clear(), "pred")
    for clip in sorted(set(clips) - have):
        (out_dir / f"{clip}.json").write_bytes(empty)
        files.append(out_dir / f"{clip}.json")
    return sorted(files)


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(_json_safe(obj), indent=2, sort_keys=False, default=str) + "\n")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "–"


def run_report(recipe: Recipe, chain: ChainResult, metrics: dict | None, split_metrics: dict,
               fit_clips: list[str], eval_clips: list[str], sizes: dict[str, int]) -> str:
    from calib.tables import CLASS_NAMES

    lines = [f"# Run of recipe `{recipe.name}`", ""]
    if recipe.description:
        lines += [recipe.description, ""]
    lines += [f"Fit clips: {len(fit_clips)} ({', '.join(recipe.splits.fit) or 'every labeled clip'}); "
              f"scored clips: {len(eval_clips)} ({', '.join(recipe.splits.evaluate) or 'every labeled clip'}); "
              f"protocol `{recipe.scoring.protocol}`.", "",
              "## Stages", "", "| # | stage | type | parameters | learns | cached | seconds | detections |",
              "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(chain.records):
        on = f"on system {r.on_system}: " if r.on_system else ""
        lines.append(f"| {i + 1} | {r.address} | {r.type} | {on}{_params_text(r.params)} | {'yes' if r.learns else ''} | "
                     f"{'yes' if r.cached else ''} | {'' if r.cached else f'{r.seconds:.2f}'} | {r.rows if r.rows or not r.cached else ''} |")
    skipped = [s.address for _, s in recipe.chain(enabled_only=False) if not s.enabled]
    if skipped:
        lines += ["", f"Disabled: {', '.join(skipped)}."]
    if metrics is not None:
        h = headline(metrics)
        lines += ["", "## Metrics (scored clips)", "", f"- mAP: {_fmt(h['mAP'])}", f"- Pearson: {_fmt(h['pearson'])}"]
        for k in ("macro_AP50", "macro_AP75", "micro_mAP", "micro_pearson_r", "mask_AP50", "distance_mape"):
            if k in metrics:
                lines.append(f"- {k}: {_fmt(metrics[k])}")
        if split_metrics:
            lines += ["", "| split | mAP | Pearson |", "|---|---|---|"]
            for s, m in split_metrics.items():
                hs = headline(m)
                lines.append(f"| {s or '(root)'} | {_fmt(hs['mAP'])} | {_fmt(hs['pearson'])} |")
        lines += ["", "| class | AP |", "|---|---|"]
        for cid, ap in sorted(h["per_class_ap"].items()):
            lines.append(f"| {cid} {CLASS_NAMES[cid]} | {_fmt(ap)} |")
    elif not eval_clips:
        lines += ["", "No ground truth for any clip: not scored."]
    else:
        lines += ["", "Not scored (--no-score)."]
    total = sum(sizes.values())
    biggest = max(sizes.values(), default=0)
    lines += ["", "## Files", "", f"{len(sizes)} DCASE file(s) in `dcase/`, {total / 2**20:.2f} MiB in all, "
              f"largest {biggest / 2**20:.2f} MiB (limit 20 MiB)."]
    return "\n".join(lines) + "\n"
