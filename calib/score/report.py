"""Diagnostics of a scoring run: tables, PR curves, IoU histogram, recall ceiling.

``write_report(result, folder)`` writes, for the dcase2026 protocol:
``per_class.md`` / ``per_class.csv`` (AP per threshold, mAP, Pearson, recall ceiling),
``pr_curves.png`` (one panel per class plus the macro curve, at 0.5 IoU or the first
threshold), ``iou_hist.png`` (soft IoU of matched pairs), ``recall_ceiling.json``;
for the coco protocol the per-class table only. Files are written to a temporary folder first
and moved in place at the end, so a failure leaves no half report.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from calib.score.matching import KIND_FN, KIND_MATCHED, N_CLASSES, RECALL_POINTS, pr_curve
from calib.score.thresholds import threshold_label
from calib.tables import CLASS_NAMES


def _fmt(v, digits=4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def per_class_table(result) -> pl.DataFrame:
    """One row per class with its official numbers (and recall ceiling for dcase2026)."""
    m = result.metrics
    if result.protocol == "dcase2026":
        thr = m["iou_thresholds"]
        rows = []
        for c, name in enumerate(CLASS_NAMES):
            pc = m["per_class"][name]
            row = {"class_id": c, "class": name, "n_gt": pc["n_gt"], "n_det": pc["n_det"], "mAP": pc["mAP"]}
            row.update({f"AP{threshold_label(t)}": v for t, v in zip(thr, pc["AP_per_thr"])})
            row.update({"pearson_r": pc["pearson_r"], "pearson_n": pc["pearson_n"]})
            ceil = result.recall_ceiling.get("per_class", {}).get(name, {})
            row.update({f"ceiling@{k}": v for k, v in ceil.items() if k != "n_gt"})
            rows.append(row)
        return pl.DataFrame(rows, infer_schema_length=None)
    return pl.DataFrame({"class_id": list(range(N_CLASSES)), "class": list(CLASS_NAMES),
                         "mask_AP": [m["per_class_mAP"][str(c)] for c in range(N_CLASSES)]},
                        schema_overrides={"mask_AP": pl.Float64})


def markdown_table(df: pl.DataFrame) -> str:
    cols = df.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.iter_rows():
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def summary_lines(result) -> list[str]:
    m = result.metrics
    if result.protocol == "dcase2026":
        keys = ["macro_mAP", "macro_AP50", "macro_AP75", "macro_pearson_r", "micro_mAP", "micro_AP50",
                "micro_AP75", "micro_pearson_r", "micro_pearson_n"]
    else:
        keys = ["mask_mAP", "mask_AP50", "pearson_r", "distance_mape"]
    return [f"{k:>16s}: {_fmt(m.get(k), 6)}" for k in keys]


def console_table(result) -> str:
    """The readable per-class table printed by ``calib score``."""
    df = per_class_table(result)
    if result.protocol == "dcase2026":
        thr = result.metrics["iou_thresholds"]
        shown = ["class", "n_gt", "n_det", "mAP"] + [f"AP{threshold_label(t)}" for t in thr[:4]] + ["pearson_r"]
    else:
        shown = ["class", "mask_AP"]
    df = df.select(shown)
    widths = [max(len(c), *(len(_fmt(v)) for v in df.get_column(c).to_list())) for c in shown]
    out = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(shown, widths)))]
    for row in df.iter_rows():
        out.append("  ".join(_fmt(v).rjust(w) if i else _fmt(v).ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(out + [""] + summary_lines(result))


def _curve_threshold(thresholds) -> int:
    for i, t in enumerate(thresholds):
        if abs(t - 0.5) < 1e-9:
            return i
    return 0


def pr_curves(result) -> tuple[float, dict[int, tuple[np.ndarray, np.ndarray]], np.ndarray | None]:
    """(threshold, {class: (recall, precision)}, macro interpolated precision on 101 points)."""
    rec = result.records
    thr = result.metrics["iou_thresholds"]
    t = thr[_curve_threshold(thr)]
    kind, cls = rec["kind"], rec["cls"]
    tp = (kind == KIND_MATCHED) & (rec["iou"] >= np.float32(t))
    curves, interp = {}, []
    for c in range(N_CLASSES):
        n_gt = int(np.count_nonzero((cls == c) & (kind != 1)))
        sel = (cls == c) & (kind != KIND_FN)
        if n_gt == 0 or not sel.any():
            continue
        r, p = pr_curve(rec["score"][sel], tp[sel], n_gt)
        curves[c] = (r, p)
        suffix = np.maximum.accumulate(p[::-1])[::-1]
        idx = np.searchsorted(r.astype(np.float64), RECALL_POINTS, side="left")
        interp.append(np.where(idx < r.size, suffix[np.minimum(idx, r.size - 1)], 0.0))
    return t, curves, (np.mean(interp, axis=0) if interp else None)


def _plot_pr(result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, curves, macro = pr_curves(result)
    fig, axes = plt.subplots(4, 4, figsize=(14, 13), sharex=True, sharey=True)
    for c in range(N_CLASSES + 1):
        ax = axes.flat[c]
        if c < N_CLASSES:
            ax.set_title(CLASS_NAMES[c], fontsize=9)
            if c in curves:
                r, p = curves[c]
                ax.plot(r, p, lw=1)
            else:
                ax.text(0.5, 0.5, "no GT or no detections", ha="center", va="center", fontsize=8)
        else:
            ax.set_title("macro (interpolated)", fontsize=9)
            if macro is not None:
                ax.plot(RECALL_POINTS, macro, lw=1.5, color="k")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes.flat[N_CLASSES + 1:]:
        ax.axis("off")
    fig.suptitle(f"Precision / recall at soft IoU >= {t:g}")
    fig.supxlabel("recall")
    fig.supylabel("precision")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_iou_hist(result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = result.records
    ious = rec["iou"][rec["kind"] == KIND_MATCHED].astype(np.float64)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(ious, bins=50, range=(0, 1), color="tab:blue")
    for t in result.metrics["iou_thresholds"]:
        ax.axvline(t, color="tab:red", lw=0.8, ls="--")
    ax.set_xlabel("soft IoU of matched pairs")
    ax.set_ylabel("pairs")
    ax.set_title(f"{ious.size} matched pairs (dashed: IoU thresholds)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(result, folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        df = per_class_table(result)
        df.write_csv(tmp / "per_class.csv")
        md = [f"# calib score report ({result.protocol})", "", "```", *summary_lines(result), "```", "",
              markdown_table(df), ""]
        if result.protocol == "dcase2026":
            ceil = result.recall_ceiling
            md += ["## Recall ceiling", "",
                   "Fraction of GT whose best same-class prediction in its frame reaches the soft IoU, "
                   "whatever the scores (an upper bound on recall for any reranking):", "",
                   "| IoU | " + " | ".join(ceil["overall"]) + " |",
                   "|---|" + "|".join("---" for _ in ceil["overall"]) + "|",
                   "| all classes | " + " | ".join(_fmt(v) for v in ceil["overall"].values()) + " |", ""]
            (tmp / "recall_ceiling.json").write_text(json.dumps(_nan_none(ceil), indent=1))
            _plot_pr(result, tmp / "pr_curves.png")
            _plot_iou_hist(result, tmp / "iou_hist.png")
        if result.skipped:
            md += ["## Skipped prediction files (no GT)", "", *[f"- {s}" for s in result.skipped], ""]
        (tmp / "per_class.md").write_text("\n".join(md))
        folder.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            os.replace(f, folder / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _nan_none(obj):
    if isinstance(obj, dict):
        return {k: _nan_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_none(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
