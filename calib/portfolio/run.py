"""Running a portfolio: every variant of a grid, three estimates each, the choice, the outputs.

For a variant, the dev clips D are the labeled clips of its recipe's ``fit`` and ``evaluate``
splits. Estimates (all scored with the recipe's protocol):

- in-sample: stages fit on D, scored on D;
- out-of-fold: D split into K clip folds; for each fold, stages fit on the other K-1 folds and
  applied; the held-out fold's detections pooled over folds and scored once on D;
- site-held-out: stages fit on the D clips of one site (split names containing ``site.fit``) and
  scored on the other site's (``site.score``).

A variant with no stage that learns gives the same detections whatever it is fit on, so its
out-of-fold estimate equals its in-sample one exactly and the extra runs are skipped. The system
submitted for a variant is the one fit on all of D and applied to every clip.

Gated stages (``gate = "per_class" | "global"``, :mod:`calib.stages.gate`): the three estimates
are also computed for the chain without the stage and for the chain with the stage ungated, so
the report shows, per gated stage and class, the gain of applying the stage (ungated, and as
gated) vs not applying it, in-sample / out-of-fold / site-held-out, and the classes the submitted
gate applies it to. Only gated stages get these extra runs (the stage cache shares the common
prefix of the chains).

Output folder: ``portfolio.json`` (the choice), ``estimates.json`` / ``estimates.csv`` (every
variant), ``gate_gains.csv`` (the gated stages' gains, when a variant has one),
``variants/<name>/`` (recipe.toml, detections.parquet of the submitted system, metrics.json with
the three estimates and the gate gains), ``report.md`` and PNG plots, ``.cache/`` (stage cache).
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import polars as pl

from calib.portfolio.choose import Choice, Estimate, Fragility, choose
from calib.portfolio.grid import Grid, Variant, expand
from calib.recipe.cache import StageCache
from calib.recipe.inputs import LoadedInputs, digest, load_inputs
from calib.publish import publish_staged, staging, write_json
from calib.recipe.chain import ChainResult, check_imports, clip_sets, run_chain
from calib.recipe.schema import Recipe
from calib.recipe.scoring import Scorer, restrict, score_clips, scoring_cache
from calib.score.result import ScoreResult
from calib.stages.base import Tables

Log = Callable[[str], None]


@dataclass
class VariantResult:
    variant: Variant
    learned: list[str]
    dev_clips: list[str]
    folds: int
    in_sample: dict
    oof: dict
    site: dict | None
    site_note: str
    detections: pl.DataFrame | None  # the submitted system's table; None when it sits in the cache
    sizes: dict[str, int]  # clip -> bytes of its DCASE file
    all_clips: list[str] = field(default_factory=list)  # every clip of the inputs
    labeled_clips: list[str] = field(default_factory=list)  # clips with ground truth
    seconds: float = 0.0
    final_key: str = ""  # stage-cache key of the submitted system's tables
    #: per gated stage and class: gains of applying the stage vs not (see :func:`gate_gains`)
    gate_gains: list[dict] = field(default_factory=list)

    def load_detections(self, cache: StageCache | None) -> pl.DataFrame:
        if self.detections is not None:
            return self.detections
        return cache.load(self.final_key)[0]["detections"]

    @property
    def max_bytes(self) -> int:
        return max(self.sizes.values(), default=0)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def estimate(self) -> Estimate:
        from calib.constants import MAX_FILE_BYTES

        return Estimate(self.variant.name, list(self.learned), ScoreResult.of(self.in_sample).headline,
                        ScoreResult.of(self.oof).headline, ScoreResult.of(self.site).headline,
                        self.max_bytes <= MAX_FILE_BYTES)


@dataclass
class PortfolioResult:
    out_dir: Path
    results: list[VariantResult]
    chosen: list[Choice]
    fragility: list[Fragility] = field(default_factory=list)


def fold_assignment(clips: list[str], k: int, seed: int) -> dict[str, int]:
    """Clip -> fold in 0..k-1: a seeded permutation of the sorted clips dealt round-robin."""
    clips = sorted(clips)
    perm = np.random.default_rng(seed).permutation(len(clips))
    return {clips[j]: i % k for i, j in enumerate(perm)}


def file_sizes(det: pl.DataFrame) -> dict[str, int]:
    """Bytes of each clip's DCASE file as export would write it."""
    from calib.io.dcase import dumps_clip

    if not len(det):
        return {}
    parts = det.sort(["clip", "det_id"], maintain_order=True).partition_by("clip", as_dict=True, maintain_order=True)
    return {key[0]: len(dumps_clip(part, "pred")) for key, part in sorted(parts.items())}


def _site_clips(gt_clips: pl.DataFrame, clips: list[str], needle: str) -> list[str]:
    splits = gt_clips.select("clip", "split").unique()
    hit = splits.filter(pl.col("split").str.to_lowercase().str.contains(needle.lower(), literal=True)
                        & pl.col("clip").is_in(clips))
    return sorted(hit.get_column("clip").unique().to_list())


@dataclass
class Estimates:
    """The three estimates of one recipe, and the chain fit on all dev clips (the submitted system)."""

    in_sample: dict
    oof: dict
    site: dict | None
    site_note: str
    folds: int
    full: pl.DataFrame  # detections of the chain fit on every dev clip
    chain: ChainResult


def score_key(chain_key: str, clips, recipe: Recipe, scorer: Scorer) -> tuple:
    """What a chain's metrics on ``clips`` depend on: its output (the chain's key covers the inputs,
    GT included), the clips, the scoring settings and the scorer."""
    return chain_key, tuple(sorted(clips)), digest(recipe.scoring.to_dict()), id(scorer)


def estimate_recipe(recipe: Recipe, loaded: LoadedInputs, grid: Grid, dev: list[str], *, cache: StageCache | None,
                    scorer: Scorer, source: str | None = None, metrics_by_key: dict | None = None) -> Estimates:
    """In-sample, out-of-fold and site-held-out metrics of ``recipe`` on the ``dev`` clips (see
    the module docstring). ``metrics_by_key``: metrics by :func:`score_key` this run computed already
    (the chains run ahead, other variants' estimates), taken instead of scoring again and added to."""
    tables: Tables = loaded.tables
    truth = tables["truth"]
    learned = any(spec.learns for _, spec in recipe.chain())

    def chain_on(fit_clips) -> ChainResult:
        return run_chain(recipe, tables, loaded.key, fit_clips=fit_clips, cache=cache, log=lambda s: None, source=source)

    def score(det, clips, chain: ChainResult | None = None):
        known = chain is not None and metrics_by_key is not None
        key = score_key(chain.key, clips, recipe, scorer) if known else None
        if key is not None and key in metrics_by_key:
            return metrics_by_key[key]
        metrics = score_clips(scorer, det, truth, clips, recipe.scoring)
        if key is not None:
            metrics_by_key[key] = metrics
        return metrics

    full_chain = chain_on(dev)
    full = full_chain.tables["detections"]
    in_sample = score(full, dev, full_chain)
    k = min(grid.folds, len(dev))
    if not learned:
        oof = in_sample  # nothing is fit: the same detections whatever the folds
    elif k < 2:
        oof = {}
    else:
        folds = fold_assignment(dev, k, grid.seed)
        held = []
        for f in range(k):
            out_clips = [c for c in dev if folds[c] == f]
            det = chain_on([c for c in dev if folds[c] != f]).tables["detections"]
            held.append(det.filter(pl.col("clip").is_in(out_clips)))  # a copy: a slice would keep the whole fold output alive
        oof = score(pl.concat(held, how="diagonal_relaxed"), dev)
    site_fit = _site_clips(tables.truth_clips, dev, grid.site_fit)
    site_score = _site_clips(tables.truth_clips, dev, grid.site_score)
    site, note = None, ""
    if not site_fit or not site_score:
        note = (f"no dev clips from a split named like {grid.site_fit!r} and one like {grid.site_score!r}: "
                "no site-held-out estimate")
    else:
        site_chain = full_chain if not learned else chain_on(site_fit)
        site = score(site_chain.tables["detections"], site_score, site_chain)
        note = f"fit on {len(site_fit)} {grid.site_fit} clip(s), scored on {len(site_score)} {grid.site_score} clip(s)"
    return Estimates(in_sample, oof, site, note, k, full, full_chain)


ESTIMATES = ("in_sample", "oof", "site")


def gate_gains(recipe: Recipe, est: Estimates, loaded: LoadedInputs, grid: Grid, dev: list[str], *,
               cache: StageCache | None, scorer: Scorer, source: str | None = None,
               metrics_by_key: dict | None = None) -> list[dict]:
    """Per gated stage and class (and the macro mAP, ``class_id`` None): the gain of applying the
    stage vs not applying it, in-sample / out-of-fold / site-held-out: ``stage_*`` for the stage
    without its gate, ``gated_*`` for the stage as gated (the variant itself), both against the
    chain without the stage; ``applied``: the submitted system's gate acts on that class. The
    stage's two counterfactual chains (without it, ungated) are run only for gated stages."""
    from calib.constants import CLASS_NAMES

    rows = []
    records = {r.path: (r, st) for r, st in zip(est.chain.records, est.chain.stages)}
    for i, spec in enumerate(recipe.stages):
        if not (spec.enabled and spec.gated):
            continue
        path = f"stages[{i}]"
        without, ungated = _counterfactuals(recipe, i)
        same = dict(cache=cache, scorer=scorer, source=source, metrics_by_key=metrics_by_key)
        base = estimate_recipe(without, loaded, grid, dev, **same)
        raw = estimate_recipe(ungated, loaded, grid, dev, **same)
        record, stage = records[path]
        applied = set(getattr(stage, "kept_classes_", []))
        heads = {name: {e: ScoreResult.of(getattr(x, e)) for e in ESTIMATES} for name, x in
                 (("base", base), ("stage", raw), ("gated", est))}
        for cls in [*range(len(CLASS_NAMES)), None]:
            row = {"stage": spec.address, "type": spec.type, "gate": spec.gate, "class_id": cls,
                   "class_name": "macro" if cls is None else CLASS_NAMES[cls],
                   "applied": (bool(applied) if spec.gate == "global" else None) if cls is None else cls in applied}
            for which in ("stage", "gated"):
                for e in ESTIMATES:
                    if cls is None:
                        a, b = heads[which][e].headline, heads["base"][e].headline
                    else:
                        a = heads[which][e].per_class_ap.get(cls, math.nan)
                        b = heads["base"][e].per_class_ap.get(cls, math.nan)
                    row[f"{which}_{e}"] = a - b
            rows.append(row)
    return rows


def _counterfactuals(recipe: Recipe, i: int) -> tuple[Recipe, Recipe]:
    """(the recipe without its gated stage i, the recipe with stage i ungated)."""
    without = copy.deepcopy(recipe)
    without.stages[i].enabled = False
    ungated = copy.deepcopy(recipe)
    ungated.stages[i].gate, ungated.stages[i].gate_params = None, {}
    return without, ungated


def estimate_chains(recipe: Recipe, truth_clips: pl.DataFrame, grid: Grid, dev: list[str]) -> list[tuple[list, list]]:
    """(fit clips, scored clips) of every chain :func:`estimate_recipe` runs for ``recipe`` (the
    full chain, the folds, the site); ``truth_clips``: the GT clips and their splits."""
    out = [(dev, dev)]
    if any(spec.learns for _, spec in recipe.chain()):
        k = min(grid.folds, len(dev))
        if k >= 2:
            folds = fold_assignment(dev, k, grid.seed)
            out += [([c for c in dev if folds[c] != f], [c for c in dev if folds[c] == f]) for f in range(k)]
        site_fit = _site_clips(truth_clips, dev, grid.site_fit)
        site_score = _site_clips(truth_clips, dev, grid.site_score)
        if site_fit and site_score:
            out.append((site_fit, site_score))
    return out


def chain_jobs(recipe: Recipe, truth_clips: pl.DataFrame, grid: Grid, dev: list[str]) -> list[tuple[Recipe, list, list]]:
    """(recipe, fit clips, scored clips) of every chain a variant's estimates run (gate gains
    included): what :func:`_warm_chain` runs ahead in parallel."""
    jobs = [(recipe, fit, scored) for fit, scored in estimate_chains(recipe, truth_clips, grid, dev)]
    for i, spec in enumerate(recipe.stages):
        if spec.enabled and spec.gated:
            for r in _counterfactuals(recipe, i):
                jobs += [(r, fit, scored) for fit, scored in estimate_chains(r, truth_clips, grid, dev)]
    return jobs


_WORKER_INPUTS: dict = {}  # a worker's loaded inputs, by (inputs, base folder, cache): loaded once per process


def _warm_chain(recipe: Recipe, fit: list[str], scored: list[str], *, base_dir, cache_root, allow_imports,
                scorer: Scorer | None, source: str | None) -> None:
    """Run one chain of a portfolio (in a worker) and score it on ``scored``: its stage outputs,
    emitted detections, GT maps and prediction rows land in the caches on disk, so the estimates
    assembled afterwards in the parent recompute nothing."""
    import features as F

    from calib.recipe.scoring import official_scorer

    with F.allowed_imports(allow_imports), scoring_cache(cache_root):
        key = (digest(recipe.inputs.to_dict()), str(base_dir), str(cache_root))
        if key not in _WORKER_INPUTS:
            _WORKER_INPUTS.clear()
            _WORKER_INPUTS[key] = load_inputs(recipe, base_dir, cache_dir=cache_root)
        loaded = _WORKER_INPUTS[key]
        cache = StageCache(cache_root)
        cache.remember(loaded.files)
        det = run_chain(recipe, loaded.tables, loaded.key, fit_clips=fit, cache=cache, source=source).tables["detections"]
        score_clips(scorer or official_scorer, det, loaded.tables["truth"], scored, recipe.scoring)


def _warm_here(job, loaded: dict[str, LoadedInputs], cache: StageCache, scorer: Scorer, source: str | None,
               metrics_by_key: dict) -> None:
    """:func:`_warm_chain` on a thread of this process: the inputs, caches and imports are this
    process's own, and the metrics are kept in ``metrics_by_key`` (by :func:`score_key`) for the
    estimates."""
    recipe, fit, clips = job
    ld = loaded[digest(recipe.inputs.to_dict())]
    res = run_chain(recipe, ld.tables, ld.key, fit_clips=fit, cache=cache, log=lambda s: None, source=source)
    metrics = score_clips(scorer, res.tables["detections"], ld.tables["truth"], clips, recipe.scoring)
    metrics_by_key[score_key(res.key, clips, recipe, scorer)] = metrics


#: threads that run a portfolio's chains when they are too small for worker processes: about half
#: of a chain's work holds the GIL (the rest is LightGBM, polars, Parquet, Qhull), so more threads
#: add little (4 lowthr clips x 300 frames on 2 cores: the chains' 6.5-8 s on one thread take 4-5 s)
CHAIN_THREADS = 2

#: rough in-process seconds per input detection and chain of a portfolio (stages, emission,
#: scoring; tests/benchmarks/bench_portfolio.py): a pool is started for the chains only when they
#: add up to :data:`calib.score.parallel.POOL_MIN_SECONDS`
PORTFOLIO_S_PER_DET_CHAIN = 2e-5


def warm_chains(variants: list[Variant], loaded: dict[str, LoadedInputs], grid: Grid, *, cache: StageCache,
                base_dir, scorer: Scorer, source: str | None, log: Log, allow_imports=(),
                metrics_by_key: dict | None = None) -> int:
    """Run every chain of every variant (folds and site, gate gains) ahead, over the workers or the
    Dask cluster of the enclosing :func:`calib.score.parallel.scale_out` block, when it has more
    than one worker and the work is big enough, else on :data:`CHAIN_THREADS` threads of this
    process (chains too small to pay for starting workers, importing LightGBM in them and sending
    them the inputs). Returns the threads of this process that ran them (0: workers or a cluster
    ran them, or nothing ran ahead, the estimates run them one by one). The results reach the
    estimates through the caches only, and the estimates are then assembled in order exactly as
    without workers: the outputs are the same bytes whatever the jobs or backend.

    Whenever there are workers, the GT maps and the input detections' rerank labels are first
    computed over them, clip by clip (:func:`prepare_inputs`), even when the chains themselves
    are too small for a pool: rendering GT is most of a small portfolio's work."""
    from calib.score.parallel import largest_first, parallel_map, pool_running, settings, thread_map, use_pool

    s = settings()
    if not s.parallel:
        return 0
    jobs, costs = [], []
    for v in variants:
        ld = loaded[digest(v.recipe.inputs.to_dict())]
        truth = ld.tables.get("truth")
        if truth is None:
            return 0  # evaluate_variant says why
        fit, evaluate = clip_sets(v.recipe, ld.tables)
        n_det = sum(len(df) for df in ld.tables.systems.values())
        for job in chain_jobs(v.recipe, ld.tables.truth_clips, grid, sorted(set(fit) | set(evaluate))):
            jobs.append(job)
            costs.append(PORTFOLIO_S_PER_DET_CHAIN * n_det)
    seen, unique, unique_costs = set(), [], []
    for (recipe, fit, scored), c in zip(jobs, costs):
        k = (digest(recipe.to_dict()), tuple(fit), tuple(scored))
        if k not in seen:
            seen.add(k)
            unique.append((recipe, fit, scored))
            unique_costs.append(c)
    reranked = any(spec.type == "rerank" and spec.enabled for v in variants for spec in v.recipe.stages)
    with preloaded(CHAIN_MODULES if pool_running(s.jobs, s.backend) else ()):  # while the workers render
        prepare_inputs(loaded.values(), labels=reranked)
    if not use_pool(len(unique), sum(unique_costs), jobs=s.jobs, backend=s.backend):
        threads = min(worker_count(s.jobs), CHAIN_THREADS, len(unique))
        if threads < 2:
            return 0
        log(f"portfolio: {len(unique)} chain(s) on {threads} threads of this process (too few detections to pay "
            "for worker processes)")
        memo = {} if metrics_by_key is None else metrics_by_key
        thread_map(_warm_here, [(job, loaded, cache, scorer, source, memo) for job in unique], threads=threads,
                   desc="portfolio chains", unit="chain")
        return threads
    if s.backend != "dask":  # a cluster's workers have their own memory
        need = worker_memory(loaded.values(), s.jobs)
        free = available_memory()
        if free is not None and need > free:
            log(f"portfolio: chains stay in this process: {worker_count(s.jobs)} workers would each hold the inputs "
                f"and a chain's working tables (about {need / 2**30:.1f} GiB together), more than the "
                f"{free / 2**30:.1f} GiB available; per-clip work (GT maps, labels, scoring) still uses them")
            return 0
    log(f"portfolio: {len(unique)} chain(s) over {'a Dask cluster' if s.backend == 'dask' else f'{s.jobs} workers'}")
    order = largest_first(unique_costs)  # equal costs: the variants' order, full chains before their folds
    kw = dict(base_dir=Path(base_dir).resolve(), cache_root=Path(cache.root).resolve(), allow_imports=sorted(allow_imports),
              scorer=scorer, source=source)
    parallel_map(_warm_one, [(unique[i], kw) for i in order], **s.par(), desc="portfolio chains", unit="chain")
    return 0


#: a chain's peak memory per byte of its loaded inputs (78 lowthr clips x 1500 frames: inputs
#: 1.42 GiB, a chain with rerank peaks at 7.2 GiB): what each worker running chains holds
CHAIN_BYTES_PER_INPUT_BYTE = 5.0


def worker_count(jobs: int) -> int:
    return jobs if jobs > 0 else (os.cpu_count() or 1)


def worker_memory(loaded, jobs: int) -> float:
    """Bytes the chain workers would hold together: each loads the inputs and runs whole chains."""
    inputs = sum(df.estimated_size() for ld in loaded for df in ld.tables.frames())
    return CHAIN_BYTES_PER_INPUT_BYTE * inputs * worker_count(jobs)


def available_memory() -> float | None:
    """Bytes of memory available to new processes (Linux ``MemAvailable``); None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def prepare_inputs(loaded, *, labels: bool) -> None:
    """Each GT map the inputs' detections need, rendered once (over the workers, clip by clip, when
    the work pays for a pool) and cached; with ``labels``, the input detections' rerank labels
    too (their IoU rows computed once over the clips and cached): not again by every chain, nor
    by several workers' first chains at the same time."""
    from calib.score.api import best_ious, prepare_gt

    for ld in loaded:
        truth = ld.tables.get("truth")
        if truth is None:
            continue
        if labels and ld.tables.get("detections") is not None:  # first: a clip's job renders the GT its labels need
            best_ious(ld.tables["detections"], truth)
        prepare_gt(truth, [ld.tables.get("detections"), *ld.tables.systems.values()])  # what other systems need


#: what the per-clip jobs of a portfolio's pool (ingest, GT maps, labels) import in its workers
POOL_MODULES = ("calib.score.api", "calib.score.fast", "calib.score.pred_cache", "calib.io.dcase")

#: what the chains import here (LightGBM brings scikit-learn: about 1.2 s), while the workers render
CHAIN_MODULES = ("lightgbm",)

#: what the report imports here, while the estimates are assembled (the GT phase keeps both cores busy)
REPORT_MODULES = ("matplotlib.figure", "matplotlib.backends.backend_agg")


@contextlib.contextmanager
def preloaded(modules: Sequence[str]):
    """Import ``modules`` in a thread during the block: a block that waits on workers (the GT maps)
    leaves this process idle, and the chains after it need them. Failures are left to the real
    import (a missing extra then says so where it is needed)."""
    from calib.score.parallel import import_modules

    t = (threading.Thread(target=import_modules, args=(tuple(modules),), kwargs={"ignore_errors": True},
                          name="calib-preload", daemon=True) if modules else None)
    if t is not None:
        t.start()
    try:
        yield
    finally:
        if t is not None:
            t.join()


def gt_work_estimate(base: dict, grid: Grid, base_dir, cache_root) -> float:
    """Rough seconds of rendering the GT maps of the portfolio's inputs (the bytes of the GT files
    the base recipe and the grid name), to start workers before the recipes are even checked: 0
    when the score cache holds maps already (a portfolio sharing a run's ``--cache``) or no GT is
    a folder of JSON (what is wrong with an input is for :func:`load_inputs` to say)."""
    from calib.recipe.scoring import SCORE_CACHE_SUBDIR
    from calib.score.api import GT_S_PER_BYTE

    if any((Path(cache_root) / SCORE_CACHE_SUBDIR).glob("*")):
        return 0.0
    inputs = base.get("inputs") if isinstance(base, dict) else None
    named = [inputs.get("gt")] if isinstance(inputs, dict) else []
    named += list(grid.axes.get("inputs.gt", []))
    folders = {Path(base_dir) / os.path.expanduser(g) for g in named if isinstance(g, str)}
    files = [f for d in sorted(folders) if d.is_dir() for f in d.rglob("*_std.json")]
    return GT_S_PER_BYTE * sum(f.stat().st_size for f in files)


def _warm_one(job, kw) -> None:
    recipe, fit, scored = job
    _warm_chain(recipe, fit, scored, **kw)


def evaluate_variant(variant: Variant, loaded: LoadedInputs, grid: Grid, *, cache: StageCache | None,
                     scorer: Scorer, log: Log = print, source: str | None = None,
                     metrics_by_key: dict | None = None) -> VariantResult:
    """The variant's estimates (``metrics_by_key``: as :func:`estimate_recipe`)."""
    t0 = time.perf_counter()
    recipe = variant.recipe
    tables: Tables = loaded.tables
    truth = tables.get("truth")
    if truth is None:
        raise ValueError(f"variant {variant.name}: a portfolio needs ground truth (inputs.gt) to estimate anything")
    fit, evaluate = clip_sets(recipe, tables)
    dev = sorted(set(fit) | set(evaluate))
    learned = [spec.address if path != "emit" else "emit" for path, spec in recipe.chain() if spec.learns]
    same = dict(cache=cache, scorer=scorer, source=source, metrics_by_key=metrics_by_key)
    est = estimate_recipe(recipe, loaded, grid, dev, **same)
    in_sample, oof, site, note, k, full, final_key = (est.in_sample, est.oof, est.site, est.site_note, est.folds,
                                                      est.full, est.chain.key)
    gains = gate_gains(recipe, est, loaded, grid, dev, **same)
    # Keep the submitted system's table in memory only when the cache does not hold it.
    in_cache = cache is not None and cache.has(final_key)
    res = VariantResult(variant, learned, dev, k, in_sample, oof, site, note, None if in_cache else full,
                        file_sizes(full), list(loaded.clips), tables.truth_clips.get_column("clip").to_list(),
                        final_key=final_key, gate_gains=gains)
    res.seconds = time.perf_counter() - t0
    h_in, h_oof, h_site = (ScoreResult.of(m).headline for m in (in_sample, oof, site))
    log(f"{variant.name} [{variant.label}]: in-sample {h_in:.4f}, out-of-fold {h_oof:.4f}, "
        f"site-held-out {h_site:.4f} ({res.seconds:.1f} s)")
    return res


def _evaluate_logged(variant: Variant, loaded: LoadedInputs, grid: Grid, cache: StageCache, scorer: Scorer,
                     source: str | None, metrics_by_key: dict) -> tuple[VariantResult, list[str]]:
    """:func:`evaluate_variant` on a thread, with its log lines kept for the caller to print in order."""
    lines: list[str] = []
    return evaluate_variant(variant, loaded, grid, cache=cache, scorer=scorer, log=lines.append, source=source,
                            metrics_by_key=metrics_by_key), lines


def run_portfolio(grid: Grid, base_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                  base_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                  scorer: Scorer | None = None, grid_source: str | None = None, log: Log = print,
                  progress: bool = False, allow_imports: Sequence[str] = ()) -> PortfolioResult:
    """Evaluate every variant of ``grid`` and write the portfolio to ``out_dir``. ``allow_imports``:
    modules the recipes may name for import (``--allow-import``); a variant naming any other is
    refused before anything is written."""
    import features as F

    stage_root = Path(cache_dir) if cache_dir is not None else Path(out_dir) / ".cache"  # as _run_portfolio's
    with F.allowed_imports(allow_imports), scoring_cache(stage_root):  # every chain reuses the scorer's renderings
        return _run_portfolio(grid, base_path, Path(out_dir), base_dir=base_dir, cache_dir=cache_dir, scorer=scorer,
                              grid_source=grid_source, log=log, progress=progress, allow_imports=list(allow_imports))


def _run_portfolio(grid: Grid, base_path, out: Path, *, base_dir, cache_dir, scorer: Scorer | None,
                   grid_source: str | None, log: Log, progress: bool, allow_imports: list[str]) -> PortfolioResult:
    from calib.recipe.paths import make_dirs
    from calib.recipe.io import read_document
    from calib.score.parallel import prestart, progress as progress_bar, thread_map

    if scorer is None:
        from calib.recipe.scoring import official_scorer as scorer
    doc = read_document(base_path)
    cache_root = Path(cache_dir) if cache_dir is not None else out / ".cache"
    prestart(gt_work_estimate(doc, grid, base_dir, cache_root), POOL_MODULES)  # workers start while this reads
    variants = expand(grid, doc, source=grid_source)
    for v in variants:
        check_imports(v.recipe, grid_source)
        check_component(v.name, grid_source or "grid", "variant name")
    make_dirs(out)
    cache = StageCache(cache_root)
    log(f"portfolio: {len(variants)} variant(s) of {Path(base_path).name}, {grid.folds} folds")
    loaded_by_inputs: dict[str, LoadedInputs] = {}
    for v in variants:
        key = digest(v.recipe.inputs.to_dict())
        if key not in loaded_by_inputs:
            loaded_by_inputs[key] = load_inputs(v.recipe, base_dir, cache_dir=cache.root, progress=progress, log=log)
            cache.remember(loaded_by_inputs[key].files)
    metrics_by_key: dict = {}  # by score_key: a chain's output scored on the same clips is scored once
    threads = warm_chains(variants, loaded_by_inputs, grid, cache=cache, base_dir=base_dir, scorer=scorer,
                          source=grid_source, log=log, allow_imports=allow_imports, metrics_by_key=metrics_by_key)
    inputs_of = {v.name: loaded_by_inputs[digest(v.recipe.inputs.to_dict())] for v in variants}
    if threads > 1:  # the chains were small enough for threads: so is assembling their estimates
        jobs = [(v, inputs_of[v.name], grid, cache, scorer, grid_source, metrics_by_key) for v in variants]
        with preloaded(REPORT_MODULES):
            done = thread_map(_evaluate_logged, jobs, threads=threads, desc="portfolio variants", unit="variant")
        results = [r for r, _ in done]
        for _, lines in done:  # in the variants' order
            for line in lines:
                log(line)
    else:
        results = []
        with progress_bar(variants, desc="portfolio variants", unit="variant") as bar:
            for v in bar:
                results.append(evaluate_variant(v, inputs_of[v.name], grid, cache=cache, scorer=scorer, log=log,
                                                source=grid_source, metrics_by_key=metrics_by_key))
    chosen, frag = choose([r.estimate() for r in results], max_systems=grid.max_systems, fragile_gap=grid.fragile_gap)
    for i, c in enumerate(chosen, start=1):
        log(f"system {i}: {c.name} ({c.role}): {c.reason}")
    write_portfolio(out, grid, results, chosen, frag, cache)
    return PortfolioResult(out, results, chosen, frag)


# ----------------------------------------------------------------------------------------------
def estimate_rows(results: list[VariantResult], chosen: list[Choice]) -> list[dict]:
    role = {c.name: (i, c.role) for i, c in enumerate(chosen, start=1)}
    rows = []
    for r in results:
        hi, ho, hs = (ScoreResult.of(m) for m in (r.in_sample, r.oof, r.site))
        rows.append({
            "variant": r.variant.name, "settings": r.variant.label, "learned": ", ".join(r.learned),
            "in_sample_mAP": hi.headline, "oof_mAP": ho.headline, "site_mAP": hs.headline,
            "gap": hi.headline - ho.headline,
            "in_sample_pearson": hi.pearson, "oof_pearson": ho.pearson, "site_pearson": hs.pearson,
            "max_file_bytes": r.max_bytes, "total_bytes": r.total_bytes,
            "rank": role.get(r.variant.name, (None, ""))[0], "role": role.get(r.variant.name, (None, ""))[1],
        })
    return rows


def write_portfolio(out: Path, grid: Grid, results: list[VariantResult], chosen: list[Choice],
                    frag: list[Fragility], cache: StageCache | None = None) -> None:
    from calib.portfolio.report import portfolio_report
    from calib.recipe.io import dump_recipe, dumps_recipe
    from calib.tables import write_table

    by_name = {r.variant.name: r for r in results}
    rows = estimate_rows(results, chosen)
    with staging(out) as stage:
        (stage / "grid.toml").write_text(dumps_recipe(grid.to_dict()))
        for r in results:
            d = stage / "variants" / check_component(r.variant.name, "portfolio", "variant name")
            d.mkdir(parents=True)
            dump_recipe(r.variant.recipe, d / "recipe.toml")
            write_table(r.load_detections(cache), d / "detections.parquet", "detections",
                        recipe_hash=digest(r.variant.recipe.to_dict()))
            write_json(d / "metrics.json", {"in_sample": r.in_sample, "out_of_fold": r.oof,
                                            "site_held_out": r.site, "site_note": r.site_note,
                                            "dev_clips": r.dev_clips, "folds": r.folds,
                                            "all_clips": r.all_clips, "labeled_clips": r.labeled_clips,
                                            "gate_gains": r.gate_gains})
        write_json(stage / "estimates.json", rows)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["variant"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        (stage / "estimates.csv").write_text(buf.getvalue())
        gains = [{"variant": r.variant.name, **g} for r in results for g in r.gate_gains]
        if gains:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(gains[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(gains)
            (stage / "gate_gains.csv").write_text(buf.getvalue())
        portfolio = {
            "grid": grid.to_dict(),
            "fragility": [{"component": f.component, "gap_with": f.gap_with, "gap_without": f.gap_without,
                           "n_with": f.n_with, "n_without": f.n_without, "fragile": f.fragile} for f in frag],
            "chosen": [],
        }
        for i, c in enumerate(chosen, start=1):
            r = by_name[c.name]
            portfolio["chosen"].append({
                "rank": i, "variant": c.name, "role": c.role, "reason": c.reason, "settings": r.variant.settings,
                "label": r.variant.label, "recipe": r.variant.recipe.name, "learned": r.learned,
                "dev_clips": len(r.dev_clips), "folds": r.folds, "site_note": r.site_note,
                "in_sample": ScoreResult.of(r.in_sample).summary() | {"per_class_ap": None},
                "out_of_fold": ScoreResult.of(r.oof).summary(),
                "site_held_out": ScoreResult.of(r.site).summary() | {"per_class_ap": None},
                "protocol": r.variant.recipe.scoring.protocol,
            })
        write_json(stage / "portfolio.json", portfolio)
        (stage / "report.md").write_text(portfolio_report(stage, grid, results, rows, chosen, frag))
        publish_staged(stage, out)


def check_component(name, where, what: str) -> str:
    """``name`` when it is one safe path component (the clip-name rule of
    :mod:`calib.io.clipnames`), else an :class:`~calib.io.errors.InputError` naming ``where``."""
    from calib.io.clipnames import RULE, is_safe_clip_name
    from calib.io.errors import InputError

    if not is_safe_clip_name(name):
        raise InputError(where, f"unsafe {what} {name!r}: it names a folder; {RULE.replace('a clip name', 'such a name')}")
    return name


def load_portfolio(path: str | os.PathLike) -> dict:
    """``portfolio.json`` of a portfolio folder, checked where its values become paths: every chosen
    system has a rank 1..4 (distinct) and a variant that is one safe path component naming a
    folder under ``variants/``."""
    from calib.io.errors import InputError

    path = Path(path)
    f = path / "portfolio.json"
    if not f.exists():
        raise InputError(path, "not a portfolio folder (no portfolio.json); make one with 'calib portfolio'")
    try:
        portfolio = json.loads(f.read_text())
    except ValueError as e:
        raise InputError(f, f"not valid JSON ({e})") from None
    chosen = portfolio.get("chosen") if isinstance(portfolio, dict) else None
    if not isinstance(chosen, list):
        raise InputError(f, "expected an object with a 'chosen' list")
    ranks = set()
    for i, entry in enumerate(chosen):
        if not isinstance(entry, dict):
            raise InputError(f, "expected an object", record=i, what="chosen system")
        rank = entry.get("rank")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= 4 or rank in ranks:
            raise InputError(f, f"rank {rank!r}: expected a distinct whole number 1..4", record=i, what="chosen system")
        ranks.add(rank)
        if len(ranks) == len(chosen) and sorted(ranks) != list(range(1, len(chosen) + 1)):
            raise InputError(f, f"ranks {sorted(ranks)}: expected 1..{len(chosen)}")
        variant = entry.get("variant")
        check_component(variant, f"{f}: chosen system {i}", "variant name")
        if not (path / "variants" / variant).is_dir():
            raise InputError(f, f"variant {variant!r} has no folder variants/{variant}", record=i,
                             what="chosen system")
    return portfolio
