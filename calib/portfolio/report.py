"""The portfolio report: Markdown plus PNG plots (estimates per variant, per-class AP of the
chosen systems, file sizes, and the gated stages' per-class gains when a variant has one)."""
from __future__ import annotations

import math
from pathlib import Path

from calib.constants import CLASS_NAMES
from calib.portfolio.choose import Choice, Fragility
from calib.score.result import ScoreResult

LIMIT_MIB = 20.0


def _f(v, digits=4) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: byte-stable files


def variant_tick_label(row: dict) -> str:
    """A variant's x-axis label: its name (* when chosen), then its settings, one per line, so a
    reader of the plot alone knows what v03 is."""
    settings = [s.strip() for s in (row.get("settings") or "").split(", ") if s.strip()]
    return "\n".join([row["variant"] + ("*" if row.get("rank") else "")] + settings)


def plot_estimates(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [variant_tick_label(r) for r in rows]
    lines = max((n.count("\n") + 1 for n in names), default=1)
    longest = max((len(part) for n in names for part in n.split("\n")), default=4)
    x = np.arange(len(rows))
    w = 0.27
    width = max(6.0, len(rows) * max(0.6, 0.075 * longest) + 2)
    fig, axes = plt.subplots(2, 1, figsize=(width, 5.4 + 0.16 * lines), sharex=True)
    for ax, metric, title in ((axes[0], "mAP", "mAP"), (axes[1], "pearson", "Pearson r")):
        for j, (col, label) in enumerate((("in_sample", "in-sample"), ("oof", "out-of-fold"), ("site", "site-held-out"))):
            vals = [r[f"{col}_{metric}"] for r in rows]
            ax.bar(x + (j - 1) * w, [0 if math.isnan(v) else v for v in vals], w, label=label)
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=3)
    axes[0].set_title("Estimates per variant (* = chosen)")
    axes[1].set_xticks(x, names, fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_per_class(chosen: list[Choice], results_by_name: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(CLASS_NAMES))
    w = 0.8 / max(len(chosen), 1)
    for j, c in enumerate(chosen):
        ap = ScoreResult.of(results_by_name[c.name].oof).per_class_ap
        vals = [ap.get(k, math.nan) for k in range(len(CLASS_NAMES))]
        ax.bar(x - 0.4 + w * (j + 0.5), [0 if math.isnan(v) else v for v in vals], w,
               label=f"{j + 1}: {c.name} ({results_by_name[c.name].variant.label})")
    ax.set_xticks(x, [n.split("/")[0] for n in CLASS_NAMES], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("out-of-fold AP")
    ax.set_title("Per-class AP of the chosen systems (out-of-fold)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def size_unit(largest_bytes: float) -> tuple[str, float]:
    """(unit, bytes per unit) in which ``largest_bytes`` reads as a number of at least 1 when possible."""
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if largest_bytes >= size:
            return unit, float(size)
    return "bytes", 1.0


def plot_sizes(rows: list[dict], path: Path) -> None:
    """Largest and total DCASE file size per variant, each axis scaled to its data (files are
    usually far below the 20 MiB limit, which then is named in the title instead of drawn) and
    every bar labelled with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    limit = LIMIT_MIB * 2**20
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(max(8, 0.8 * len(rows) + 3), 3.8))
    for ax, key, what, colour in ((a1, "max_file_bytes", "largest file", "tab:orange"),
                                  (a2, "total_bytes", "all files", "tab:blue")):
        values = np.array([r[key] for r in rows], dtype=float)
        top = float(values.max()) if values.size else 0.0
        unit, per = size_unit(top)
        bars = ax.bar(x, values / per, color=colour)
        ax.bar_label(bars, labels=[f"{v / per:.3g}" for v in values], fontsize=7, padding=2)
        ax.set_ylim(0, max(top / per, 1e-9) * 1.18)  # room for the value labels
        ax.set_ylabel(f"{what} ({unit})")
        ax.set_xticks(x, [r["variant"] for r in rows], rotation=45, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    top = max((r["max_file_bytes"] for r in rows), default=0)
    if top > 0.5 * limit:  # the limit is within reach: draw it
        a1.set_ylim(0, max(top, limit) / 2**20 * 1.1)
        a1.axhline(LIMIT_MIB, color="red", lw=1, ls="--", label="20 MiB limit")
        a1.legend(fontsize=8)
        a1.set_title("largest file per variant", fontsize=9)
    else:
        a1.set_title(f"largest file per variant ({100 * top / limit:.2g} % of the 20 MiB limit)", fontsize=9)
    a2.set_title("all files of a variant", fontsize=9)
    fig.suptitle("DCASE file sizes per variant")
    _save(fig, path)
    plt.close(fig)


def plot_gate_gains(gains: list[dict], title: str, path: Path) -> None:
    """Per gated stage, the out-of-fold gain of the ungated stage per class (bars; green where the
    gate applies it) and its site-held-out gain (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    stages = list(dict.fromkeys(g["stage"] for g in gains))
    fig, axes = plt.subplots(len(stages), 1, figsize=(10, 3 * len(stages)), squeeze=False)
    x = np.arange(len(CLASS_NAMES))
    for ax, stage in zip(axes[:, 0], stages):
        rows = {g["class_id"]: g for g in gains if g["stage"] == stage and g["class_id"] is not None}
        oof = [rows[k]["stage_oof"] if k in rows else math.nan for k in range(len(CLASS_NAMES))]
        site = [rows[k]["stage_site"] if k in rows else math.nan for k in range(len(CLASS_NAMES))]
        colors = ["tab:green" if k in rows and rows[k]["applied"] else "tab:gray" for k in range(len(CLASS_NAMES))]
        ax.bar(x, [0 if math.isnan(v) else v for v in oof], 0.6, color=colors, label="out-of-fold (green: applied)")
        ax.plot(x, site, "o", color="black", ms=4, label="site-held-out")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("AP gain")
        ax.set_title(f"{stage}: gain of the stage (ungated) vs without it", fontsize=9)
        ax.set_xticks(x, [n.split("/")[0] for n in CLASS_NAMES], rotation=45, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    plt.close(fig)


def gate_gain_lines(results, chosen: list[Choice]) -> list[str]:
    """The report's section on gated stages (empty when no variant has one): for every variant a
    macro line per gated stage, and for the chosen ones the per-class table."""
    with_gates = [r for r in results if r.gate_gains]
    if not with_gates:
        return []
    lines = ["## Gated stages: gain of applying each stage", "",
             "Gain = AP of the chain with the stage minus AP of the chain without it, for the stage without its gate "
             "(*stage*) and as gated (*gated*: the variant itself); in-sample, out-of-fold and site-held-out as above. "
             "*applied*: the classes the submitted system's gate applies the stage to (decided on out-of-fold gains "
             "over clip folds of the fit clips).", "",
             "| variant | stage | gate | applied to | stage in-sample | stage out-of-fold | stage site | "
             "gated in-sample | gated out-of-fold | gated site |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in with_gates:
        for g in r.gate_gains:
            if g["class_id"] is not None:
                continue
            applied = [str(x["class_id"]) for x in r.gate_gains if x["stage"] == g["stage"] and x["class_id"] is not None
                       and x["applied"]]
            lines.append(f"| {r.variant.name} | {g['stage']} ({g['type']}) | {g['gate']} | {', '.join(applied) or 'none'} | "
                         + " | ".join(_f(g[f"{w}_{e}"], 4) for w in ("stage", "gated") for e in ("in_sample", "oof", "site"))
                         + " |")
    by_name = {r.variant.name: r for r in results}
    for i, c in enumerate(chosen, start=1):
        r = by_name[c.name]
        for stage in dict.fromkeys(g["stage"] for g in r.gate_gains):
            rows = [g for g in r.gate_gains if g["stage"] == stage]
            lines += ["", f"### #{i} {c.name}: {stage} ({rows[0]['type']}), gate `{rows[0]['gate']}`", "",
                      "| class | applied | stage in-sample | stage out-of-fold | stage site | gated in-sample | "
                      "gated out-of-fold | gated site |", "|---|---|---|---|---|---|---|---|"]
            for g in rows:
                name = "all (macro mAP)" if g["class_id"] is None else f"{g['class_id']} {g['class_name']}"
                applied = "–" if g["applied"] is None else ("**yes**" if g["applied"] else "no")
                lines.append(f"| {name} | {applied} | " + " | ".join(
                    _f(g[f"{w}_{e}"]) for w in ("stage", "gated") for e in ("in_sample", "oof", "site")) + " |")
    return lines + [""]


def portfolio_report(out: Path, grid, results, rows: list[dict], chosen: list[Choice], frag: list[Fragility]) -> str:
    by_name = {r.variant.name: r for r in results}
    plot_estimates(rows, out / "estimates.png")
    plot_sizes(rows, out / "file_sizes.png")
    if chosen:
        plot_per_class(chosen, by_name, out / "per_class_ap.png")
    base = results[0].variant.recipe if results else None
    lines = ["# Portfolio", ""]
    if base is not None:
        lines += [f"Base recipe `{base.name}`; {len(results)} variant(s) over "
                  f"{', '.join(f'`{a}`' for a in grid.axes) or 'no axes'}; protocol `{base.scoring.protocol}`.", ""]
    if results:
        r0 = results[0]
        lines += [f"Dev clips: {len(r0.dev_clips)}. Out-of-fold: {r0.folds} clip folds (seed {grid.seed}), stages fit on "
                  "the other folds, held-out detections pooled and scored once. Site-held-out: "
                  f"{r0.site_note}.", ""]
    lines += ["## Chosen systems", ""]
    if not chosen:
        lines.append("None: no variant has a finite out-of-fold estimate and files within 20 MiB.")
    for i, c in enumerate(chosen, start=1):
        r = by_name[c.name]
        lines.append(f"{i}. **{c.name}** ({r.variant.label}) — {c.role}: {c.reason}.")
    flagged = [f for f in frag if f.fragile]
    if frag:
        lines += ["", "## Dev-fitted components", "",
                  f"Gap = in-sample minus out-of-fold mAP; a component is fragile when the variants using it show a "
                  f"gap larger than those without it by more than {grid.fragile_gap:g}.", "",
                  "| component | variants with | mean gap with | variants without | mean gap without | fragile |",
                  "|---|---|---|---|---|---|"]
        for f in frag:
            lines.append(f"| {f.component} | {f.n_with} | {_f(f.gap_with)} | {f.n_without} | {_f(f.gap_without)} | "
                         f"{'**yes**' if f.fragile else 'no'} |")
        if not flagged:
            lines += ["", "No component is flagged: the hedges are chosen by site-held-out and by having nothing fit on dev."]
    lines += ["", "## Variants", "",
              "| variant | settings | learns | mAP in-sample | mAP out-of-fold | mAP site-held-out | gap | "
              "Pearson in-sample | Pearson out-of-fold | Pearson site | largest file MiB | chosen |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['settings']} | {row['learned'] or '–'} | {_f(row['in_sample_mAP'])} | "
                     f"{_f(row['oof_mAP'])} | {_f(row['site_mAP'])} | {_f(row['gap'])} | {_f(row['in_sample_pearson'])} | "
                     f"{_f(row['oof_pearson'])} | {_f(row['site_pearson'])} | {row['max_file_bytes'] / 2**20:.2f} | "
                     f"{('#' + str(row['rank']) + ' ' + row['role']) if row['rank'] else ''} |")
    lines += ["", "![estimates](estimates.png)", ""]
    if chosen:
        lines += ["## Per-class AP of the chosen systems (out-of-fold)", "",
                  "| class | " + " | ".join(c.name for c in chosen) + " |", "|---|" + "---|" * len(chosen)]
        aps = [ScoreResult.of(by_name[c.name].oof).per_class_ap for c in chosen]
        for k, name in enumerate(CLASS_NAMES):
            lines.append(f"| {k} {name} | " + " | ".join(_f(ap.get(k, math.nan)) for ap in aps) + " |")
        lines += ["", "![per-class AP](per_class_ap.png)", ""]
    gate_lines = gate_gain_lines(results, chosen)
    if gate_lines:
        lines += gate_lines
        first = next((by_name[c.name] for c in chosen if by_name[c.name].gate_gains), None)
        if first is not None:
            plot_gate_gains(first.gate_gains, f"Gated stages of {first.variant.name} ({first.variant.label})",
                            out / "gate_gains.png")
            lines += ["![gate gains](gate_gains.png)", ""]
    lines += ["## File sizes", "", "![file sizes](file_sizes.png)", ""]
    over = [r["variant"] for r in rows if r["max_file_bytes"] > LIMIT_MIB * 2**20]
    if over:
        lines.append(f"Over the 20 MiB per-file limit (never chosen): {', '.join(over)}.")
    return "\n".join(lines) + "\n"
