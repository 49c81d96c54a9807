"""What a recipe run leaves in its output folder, written all at once.

``OUT/``: ``recipe.toml`` (the recipe as run), ``detections.parquet`` (the final detections),
``dcase/`` (one ``<clip>.json`` per clip, empty clips included), ``state/`` (what the stages that
learn learned), ``metrics.json`` and ``metrics_per_split.json`` (when scored), ``run.json`` (keys,
clips, stages, file sizes) and ``report.md``. Everything is built in a staging folder and published
only when all of it was written (:mod:`calib.publish`); an output this run did not write (metrics
after ``--no-score``) is removed, so nothing in OUT describes other detections than
OUT/detections.parquet.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from calib.publish import publish_staged, staging, write_json
from calib.recipe.chain import ChainResult
from calib.recipe.inputs import digest
from calib.recipe.schema import Recipe
from calib.score.result import ScoreResult
from calib.recipe.state import save_state
from calib.tables import write_table

Log = Callable[[str], None]
#: the files a run may write in OUT; those a run does not write are removed from OUT
RUN_OUTPUTS = ("recipe.toml", "detections.parquet", "metrics.json", "metrics_per_split.json", "run.json", "report.md")


def write_outputs(out: Path, recipe: Recipe, chain: ChainResult, *, clips: Iterable[str], input_keys: dict,
                  metrics: dict | None, split_metrics: dict[str, dict], fit_clips: list[str], eval_clips: list[str],
                  log: Log = print) -> dict[str, int]:
    """Write the run's outputs into ``out`` (see the module doc) and return the exported DCASE file
    names with their sizes in bytes. ``clips``: every clip of the inputs (each gets a file)."""
    from calib.constants import MAX_FILE_BYTES
    from calib.recipe.io import dump_recipe

    det = chain.tables.detections
    clips = list(clips)
    with staging(out) as stage:
        dump_recipe(recipe, stage / "recipe.toml")
        write_table(det, stage / "detections.parquet", "detections", recipe_hash=digest(recipe.to_dict()), clips=clips)
        files = export_clips(det, stage / "dcase", clips, max_bytes=None)
        sizes = {f.name: f.stat().st_size for f in files}
        over = sorted(n for n, b in sizes.items() if b > MAX_FILE_BYTES)
        if over:
            log(f"warning: {len(over)} DCASE file(s) over the 20 MiB limit (e.g. {over[0]}); not submittable as is")
        write_state(stage / "state", chain)
        if metrics is not None:
            write_json(stage / "metrics.json", metrics)
        if split_metrics:
            write_json(stage / "metrics_per_split.json", split_metrics)
        write_json(stage / "run.json", {
            "recipe": recipe.name, "inputs": input_keys, "final_key": chain.key,
            "fit_clips": fit_clips, "evaluate_clips": eval_clips,
            "stages": [r.to_dict() for r in chain.records],
            "files": {"count": len(sizes), "total_bytes": sum(sizes.values()),
                      "max_bytes": max(sizes.values(), default=0), "over_limit": over},
        })
        report = run_report(recipe, chain, metrics, split_metrics, fit_clips, eval_clips, sizes)
        (stage / "report.md").write_text(report)
        written = set(publish_staged(stage, out))
    for name in set(RUN_OUTPUTS) - written:
        if (out / name).is_file():
            (out / name).unlink()
    return sizes


def write_state(folder: Path, chain: ChainResult) -> None:
    """``folder/<i>-<address>/``: the learned state of each stage that learns (copied from the
    cache where the stage was not re-run)."""
    folder.mkdir()
    for i, (rec, st) in enumerate(zip(chain.records, chain.stages)):
        if not rec.learns:
            continue
        dest = folder / f"{i:02d}-{rec.address}"  # address: a checked path component
        if rec.path in chain.state_files:
            shutil.copytree(chain.state_files[rec.path], dest)
        else:
            save_state(st, dest)


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


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "–"


def gate_report(chain: ChainResult) -> list[str]:
    """Markdown lines: per gated stage, the classes it acts on and the out-of-fold gains the gate
    decided on (empty when no stage is gated)."""
    gated = [(r, st) for r, st in zip(chain.records, chain.stages) if r.gate is not None and hasattr(st, "decision_table_")]
    if not gated:
        return []
    lines = ["", "## Gated stages", "",
             "Each gated stage was cross-fitted on the fit clips (fit on the other clip folds, applied to the held-out "
             "one) and acts only where the held-out gain (AP with the stage minus AP without), measured on at least 3 "
             "folds, has a mean above the bar: Student's t quantile at the gate's confidence times the standard error "
             "over folds (the one-sided lower confidence bound of the mean gain is above zero)."]
    for r, st in gated:
        summary = st.summary_
        kept = ", ".join(map(str, st.kept_classes_)) or "none"
        lines += ["", f"### {r.address} ({r.type}), gate `{r.gate}`", "",
                  f"{summary.get('folds')} folds over {summary.get('clips')} clip(s), confidence "
                  f"{summary.get('confidence'):g}; "
                  f"applied to class(es): {kept}."
                  + (f" It relabels detections: a change is taken only when both its classes are kept "
                     f"({summary.get('refinement_rounds')} re-check round(s))." if summary.get("relabels") else ""),
                  "", "| class | folds | mean gain | s.d. | bar | applied | reason |", "|---|---|---|---|---|---|---|"]
        for row in st.decision_table_.iter_rows(named=True):
            cls = "all (macro)" if row["class_id"] is None else f"{row['class_id']} {row['class_name']}"
            lines.append(f"| {cls} | {row['folds']} | {_fmt(row['mean_gain'])} | {_fmt(row['sd_gain'])} | "
                         f"{_fmt(row['bar'])} | {'**yes**' if row['kept'] else 'no'} | {row['reason']} |")
    return lines


def run_report(recipe: Recipe, chain: ChainResult, metrics: dict | None, split_metrics: dict,
               fit_clips: list[str], eval_clips: list[str], sizes: dict[str, int]) -> str:
    from calib.constants import CLASS_NAMES

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
        params = _params_text(r.params)
        if r.gate is not None:  # the wrapped stage's parameters, then the gate's
            inner = {k: v for k, v in r.params["stage"].items() if k != "type"}
            params = (f"{_params_text(inner)}; gate {r.gate} (folds={r.params['folds']}, seed={r.params['seed']}, "
                      f"confidence={r.params['confidence']})")
        lines.append(f"| {i + 1} | {r.address} | {r.type} | {on}{params} | {'yes' if r.learns else ''} | "
                     f"{'yes' if r.cached else ''} | {'' if r.cached else f'{r.seconds:.2f}'} | {r.rows if r.rows or not r.cached else ''} |")
    skipped = [s.address for _, s in recipe.chain(enabled_only=False) if not s.enabled]
    if skipped:
        lines += ["", f"Disabled: {', '.join(skipped)}."]
    lines += gate_report(chain)
    if metrics is not None:
        h = ScoreResult.of(metrics)
        lines += ["", "## Metrics (scored clips)", "", f"- mAP: {_fmt(h.headline)}", f"- Pearson: {_fmt(h.pearson)}"]
        for k in ("macro_AP50", "macro_AP75", "micro_mAP", "micro_pearson_r", "mask_AP50", "distance_mape"):
            if k in metrics:
                lines.append(f"- {k}: {_fmt(metrics[k])}")
        if split_metrics:
            lines += ["", "| split | mAP | Pearson |", "|---|---|---|"]
            for s, m in split_metrics.items():
                hs = ScoreResult.of(m)
                lines.append(f"| {s or '(root)'} | {_fmt(hs.headline)} | {_fmt(hs.pearson)} |")
        lines += ["", "| class | AP |", "|---|---|"]
        for cid, ap in sorted(h.per_class_ap.items()):
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
