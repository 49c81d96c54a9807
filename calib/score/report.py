"""Diagnostics of a scoring run: per-class table, PR curves, IoU histogram, recall ceiling."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl

from calib.constants import CLASS_NAMES

RECALL_POINTS = np.linspace(0, 1, 101)


def json_safe(v):
    """NaN -> None, numpy scalars -> Python, recursively (the official metrics.json writes null)."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def metrics_json(res) -> dict:
    """What metrics.json holds: the official keys (NaN as null), plus calib's ``tie_order_range``
    when the result has one."""
    out = json_safe(dict(res))
    if getattr(res, "tie_order_range", None) is not None:
        out["tie_order_range"] = json_safe(res.tie_order_range)
    return out


def per_class_table(metrics: dict, protocol: str) -> str:
    """The per-class metrics as the fixed-width text table ``calib score`` prints."""
    def f(v):
        return "   -  " if v is None or v != v else f"{v:.4f}"

    if protocol == "dcase2026":
        lines = [f"{'class':<20} {'n_gt':>6} {'n_det':>7} {'AP50':>7} {'AP75':>7} {'mAP':>7} {'pearson':>8}"]
        for name in CLASS_NAMES:
            c = metrics["per_class"][name]
            lines.append(f"{name:<20} {c['n_gt']:>6} {c['n_det']:>7} {f(c['AP50']):>7} {f(c['AP75']):>7} "
                         f"{f(c['mAP']):>7} {f(c['pearson_r']):>8}")
        lines.append(f"{'macro':<20} {'':>6} {'':>7} {f(metrics['macro_AP50']):>7} {f(metrics['macro_AP75']):>7} "
                     f"{f(metrics['macro_mAP']):>7} {f(metrics['macro_pearson_r']):>8}")
        lines.append(f"{'micro':<20} {'':>6} {'':>7} {f(metrics['micro_AP50']):>7} {f(metrics['micro_AP75']):>7} "
                     f"{f(metrics['micro_mAP']):>7} {f(metrics['micro_pearson_r']):>8}")
        return "\n".join(lines)
    lines = [f"{'class':<20} {'AP':>7}"]
    for k, name in enumerate(CLASS_NAMES):
        lines.append(f"{name:<20} {f(metrics['per_class_mAP'].get(str(k), metrics['per_class_mAP'].get(k))):>7}")
    lines.append(f"mask_mAP {f(metrics['mask_mAP'])}  mask_AP50 {f(metrics['mask_AP50'])}  "
                 f"pearson_r {f(metrics['pearson_r'])}  distance_mape {f(metrics['distance_mape'])}")
    return "\n".join(lines)


def pr_curve(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) in decreasing-score order (stable among ties)."""
    order = np.argsort(-scores, kind="stable")
    t = tp[order].astype(np.float64)
    tc, fc = np.cumsum(t), np.cumsum(1 - t)
    return tc / max(n_gt, 1), tc / np.maximum(tc + fc, 1e-9)


def interpolated(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Max precision at recall >= each of the 101 recall points (0 where none)."""
    out = np.zeros(RECALL_POINTS.size)
    if recall.size:
        # running max from the end gives max precision among recall >= r
        env = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, RECALL_POINTS, side="left")
        ok = idx < recall.size
        out[ok] = env[idx[ok]]
    return out


def write_report(res, out_dir, protocol: str = "dcase2026") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from calib.plotting import CLASS_COLOURS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    metrics = metrics_json(res)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    files.append(out / "metrics.json")
    if protocol != "dcase2026" or res.matches is None:
        (out / "per_class.md").write_text("```\n" + per_class_table(res, protocol) + "\n```\n")
        return files + [out / "per_class.md"]

    rows = [{"class_id": k, "class": n, **{c: metrics["per_class"][n][c] for c in
                                             ("n_gt", "n_det", "AP50", "AP75", "mAP", "pearson_r", "pearson_n")}}
            for k, n in enumerate(CLASS_NAMES)]
    pl.DataFrame(rows).write_csv(out / "per_class.csv")
    md = ["| class | n_gt | n_det | AP50 | AP75 | mAP | Pearson |", "|---|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for r in rows:
        md.append(f"| {r['class']} | {r['n_gt']} | {r['n_det']} | {fmt(r['AP50'])} | {fmt(r['AP75'])} | "
                  f"{fmt(r['mAP'])} | {fmt(r['pearson_r'])} |")
    md.append(f"| **macro** | | | {fmt(metrics['macro_AP50'])} | {fmt(metrics['macro_AP75'])} | "
              f"**{fmt(metrics['macro_mAP'])}** | {fmt(metrics['macro_pearson_r'])} |")
    rc = res.recall_ceiling or {}
    md += ["", "Recall ceiling: fraction of GT whose best same-class prediction in its frame reaches the soft IoU, "
           "whatever the scores (the most any reranker could recover).", "",
           "| IoU | " + " | ".join(rc.get("overall", {})) + " |", "|---|" + "---:|" * len(rc.get("overall", {})),
           "| all | " + " | ".join(f"{v:.3f}" for v in rc.get("overall", {}).values()) + " |"]
    for c, lv in (rc.get("per_class") or {}).items():
        md.append(f"| {CLASS_NAMES[int(c)]} | " + " | ".join(f"{v:.3f}" for v in lv.values()) + " |")
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "recall_ceiling.json").write_text(json.dumps(json_safe(rc), indent=1))
    files += [out / "per_class.csv", out / "report.md", out / "recall_ceiling.json"]

    m = res.matches
    thr = metrics["iou_thresholds"][0]
    tp_col = f"tp_{thr:g}"
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    curves = []
    for k, name in enumerate(CLASS_NAMES):
        n_gt = metrics["per_class"][name]["n_gt"]
        if not n_gt:
            continue
        part = m.filter(pl.col("class_id") == k)
        r, p = pr_curve(part.get_column("score").to_numpy(), part.get_column(tp_col).to_numpy(), n_gt)
        curves.append(interpolated(r, p))
        axes[0].plot(r, p, lw=1, color=CLASS_COLOURS[k], label=f"{name} (AP {metrics['per_class'][name]['AP_per_thr'][0]:.3f})")
    if curves:
        axes[1].plot(RECALL_POINTS, np.mean(curves, axis=0), color="k", lw=2)
    axes[0].set(xlabel="recall", ylabel="precision", title=f"PR per class at IoU {thr:g}", xlim=(0, 1), ylim=(0, 1.02))
    axes[0].legend(fontsize=7, loc="upper right")
    axes[1].set(xlabel="recall", ylabel="interpolated precision", xlim=(0, 1), ylim=(0, 1.02),
                title=f"macro PR at IoU {thr:g} (mean over active classes)")
    fig.tight_layout()
    fig.savefig(out / "pr_curves.png", dpi=110)
    plt.close(fig)
    files.append(out / "pr_curves.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    matched = m.filter(pl.col("gt_ann_id").is_not_null()).get_column("iou").to_numpy()
    ax.hist(matched, bins=np.linspace(0, 1, 41), color="tab:blue")
    for t in metrics["iou_thresholds"]:
        ax.axvline(t, color="k", ls=":", lw=1)
    ax.set(xlabel="soft IoU of matched pairs", ylabel="pairs", title=f"{matched.size} matched pairs")
    fig.tight_layout()
    fig.savefig(out / "iou_histogram.png", dpi=110)
    plt.close(fig)
    files.append(out / "iou_histogram.png")
    return files
