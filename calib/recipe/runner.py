"""Running a recipe: inputs -> the chain of stages (cached) -> scores -> the run's outputs.

This module only orchestrates: :mod:`calib.recipe.inputs` loads the inputs, :mod:`calib.recipe.chain`
runs the stages (fit on the ``fit`` clips, applied to every clip, resumed from the stage cache),
the recipe's scorer scores the ``evaluate`` clips, and :mod:`calib.recipe.outputs` writes the DCASE
files, metrics, learned state and report all at once.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from calib.recipe.cache import StageCache
from calib.recipe.chain import ChainResult, StageRecord, check_imports, clip_sets, run_chain  # noqa: F401
from calib.recipe.inputs import LoadedInputs, load_inputs
from calib.recipe.outputs import (RUN_OUTPUTS, check_clip_values, export_clips, gate_report,  # noqa: F401
                                  run_report, write_outputs)
from calib.recipe.paths import make_dirs
from calib.recipe.schema import Recipe
from calib.recipe.scoring import Scorer, restrict, score_clips, scoring_cache  # noqa: F401
from calib.score.result import ScoreResult
from calib.stages.base import Tables

Log = Callable[[str], None]


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

    stage_root = Path(cache_dir) if cache_dir is not None else Path(out_dir) / ".cache"  # as _run_recipe's
    with F.allowed_imports(allow_imports), scoring_cache(stage_root):  # scorer's renderings kept beside the stages
        check_imports(recipe, source)
        return _run_recipe(recipe, Path(out_dir), base_dir=base_dir, cache_dir=cache_dir, scorer=scorer,
                           source=source, log=log, progress=progress, score=score)


def _run_recipe(recipe: Recipe, out: Path, *, base_dir, cache_dir, scorer: Scorer | None, source: str | None,
                log: Log, progress: bool, score: bool) -> RunOutput:
    make_dirs(out)
    cache = StageCache(cache_dir if cache_dir is not None else out / ".cache")
    loaded: LoadedInputs = load_inputs(recipe, base_dir, cache_dir=cache.root, source=source, progress=progress,
                                       log=log)
    cache.remember(loaded.files)
    tables = loaded.tables
    fit_clips, eval_clips = clip_sets(recipe, tables, source)
    log(f"recipe {recipe.name!r}: {len(recipe.chain())} stage(s); fit on {len(fit_clips)} clip(s), "
        f"score {len(eval_clips)} clip(s)")
    chain = run_chain(recipe, tables, loaded.key, fit_clips=fit_clips, cache=cache, log=log, source=source)
    metrics, split_metrics = None, {}
    if score and tables.truth is not None and eval_clips:
        metrics, split_metrics = score_run(recipe, chain.tables.detections, tables, eval_clips,
                                           scorer or _default_scorer(), log)
    sizes = write_outputs(out, recipe, chain, clips=loaded.clips, input_keys=loaded.keys, metrics=metrics,
                          split_metrics=split_metrics, fit_clips=fit_clips, eval_clips=eval_clips, log=log)
    log(f"wrote {out}: detections.parquet, dcase/ ({len(sizes)} files), "
        f"{'metrics.json, ' if metrics is not None else ''}report.md")
    return RunOutput(out, chain, metrics, split_metrics, fit_clips, eval_clips, sizes)


def score_run(recipe: Recipe, det: pl.DataFrame, inputs: Tables, eval_clips: list[str], scorer: Scorer,
              log: Log) -> tuple[dict, dict[str, dict]]:
    """The metrics of ``det`` on the evaluate clips, and per GT split when they span several
    (``inputs``: the run's input tables, for the truth and every GT clip's split)."""
    t0 = time.perf_counter()
    truth, gt_clips = inputs["truth"], inputs.truth_clips
    metrics = score_clips(scorer, det, truth, eval_clips, recipe.scoring)
    split_metrics = {}
    splits = recipe.splits.evaluate or sorted(gt_clips.get_column("split").unique().to_list())
    if len(splits) > 1:
        for s in splits:
            clips = gt_clips.filter(pl.col("split") == s).get_column("clip").to_list()
            split_metrics[s] = score_clips(scorer, det, truth, clips, recipe.scoring)
    h = ScoreResult.of(metrics)
    log(f"scored {len(eval_clips)} clip(s) ({recipe.scoring.protocol}) in {time.perf_counter() - t0:.2f} s: "
        f"mAP {h.headline:.4f}, Pearson {h.pearson:.4f}")
    return metrics, split_metrics
