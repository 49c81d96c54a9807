"""Acceptance figures for the multi-system fusion stages on synthetic data.

Generates a ``calib synth`` set with the systems ``audio`` and ``av`` (complementary by class:
audio strong on classes 0-4, 11, 12, av on 5-10), ingests it, and prints the dcase2026 macro mAP
(IoU 0.25/0.50/0.75) of:

1. max_envelope: each system and the envelope on held-out clips — chosen on the dev-train
   splits and scored on dev-test, chosen on Sony and scored on TAU, and cross-fitted over clip
   folds (every clip scored by a choice that never saw it); the in-sample figure for contrast;
2. calibrated_union: naive union (raw scores) vs the isotonic and quantile calibrated unions,
   fitted on dev-train, scored on dev-test;
3. mask_fusion: each system vs the fused system on dev-test (nothing is fitted).

The calibrated unions are also run with av's scores squashed (s -> s^4: same order, another
scale), the case calibration exists for: the naive union then ranks audio's detections first.

Run from the repository root::

    PYTHONPATH=. python tests/benchmarks/fusion_gains.py [--clips 16] [--frames 200] [--seed 0]

(about 10 minutes on 2 busy cores at the defaults, nearly all of it in the scorer)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from calib.io.dcase import ingest_predictions, ingest_truth
from calib.score import class_scores
from calib.stages.base import Tables, make_stage
from calib.stages.fuse.max_envelope import cross_fitted, site_held_out

SYSTEMS = ("audio", "av")


def macro(det: pl.DataFrame, truth: pl.DataFrame) -> float:
    m = class_scores(det, truth).class_table().get_column("mAP").fill_nan(None).drop_nulls()
    return float(m.mean())


def on_clips(df: pl.DataFrame, clips: pl.Series) -> pl.DataFrame:
    return df.filter(pl.col("clip").is_in(clips.implode()))


def load(args) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    from fixtures.synth import generate

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        generate(root, seed=args.seed, clips=args.clips, frames=args.frames, systems=list(SYSTEMS), n_jobs=1)
        truth, _ = ingest_truth(root / "gt", progress=False)
        systems = {s: ingest_predictions([root / "systems" / s], system=s, progress=False)[0] for s in SYSTEMS}
    return truth, systems


def union_table(params, sys_dev, truth_dev, sys_held) -> pl.DataFrame:
    stage = make_stage({"type": "calibrated_union", **params}).fit(Tables(systems=sys_dev, truth=truth_dev))
    return stage.apply(Tables(systems=sys_held))["detections"]


def line(name: str, value: float, best_single: float | None = None) -> str:
    gain = "" if best_single is None else f"   ({value - best_single:+.4f} vs best single system)"
    return f"  {name:<44s} {value:.4f}{gain}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=4)
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as they are computed

    t0 = time.perf_counter()
    truth, systems = load(args)
    dev = truth.filter(pl.col("split").str.contains("train")).get_column("clip").unique()
    held = truth.filter(pl.col("split").str.contains("test")).get_column("clip").unique()
    truth_dev, truth_held = on_clips(truth, dev), on_clips(truth, held)
    sys_dev = {n: on_clips(d, dev) for n, d in systems.items()}
    sys_held = {n: on_clips(d, held) for n, d in systems.items()}
    print(f"synthetic set: {args.clips} clips x {args.frames} frames, seed {args.seed}; "
          f"dev-train {dev.len()} clips, dev-test {held.len()} clips; "
          f"detections {', '.join(f'{n} {d.height}' for n, d in systems.items())} "
          f"(generated and ingested in {time.perf_counter() - t0:.1f} s)")

    singles = {n: macro(d, truth_held) for n, d in sys_held.items()}
    best = max(singles.values())
    print("\nmacro mAP on dev-test (held-out clips):")
    for n, v in singles.items():
        print(line(f"system {n}", v))

    print("\n1. max_envelope")
    env = make_stage({"type": "max_envelope"}).fit(Tables(systems=sys_dev, truth=truth_dev))
    print("  per-class choice (fitted on dev-train):")
    print("\n".join("    " + r for r in env.report().splitlines()))
    out = env.apply(Tables(systems=sys_held))["detections"]
    print(line("envelope chosen on dev-train, dev-test", macro(out, truth_held), best))
    site = site_held_out(systems, truth)
    for name, v in site.rows():
        print(line(name, v))
    summary, _ = cross_fitted(systems, truth, n_folds=args.folds, seed=args.seed)
    for name, v in summary.rows():
        print(line(f"{name} (all clips)", v))

    print("\n2. calibrated_union (fitted on dev-train, scored on dev-test)")
    variants = [("naive union (raw scores)", {"method": "none"}),
                ("union, isotonic per system", {"method": "isotonic", "by_class": False}),
                ("union, isotonic per system and class", {"method": "isotonic"}),
                ("union, quantile per system and class", {"method": "quantile"})]
    naive = union_table(variants[0][1], sys_dev, truth_dev, sys_held)
    print(line(variants[0][0], macro(naive, truth_held), best))
    for label, params in variants[1:]:
        print(line(label, macro(union_table(params, sys_dev, truth_dev, sys_held), truth_held), best))
    # Systems rarely share a score scale; squash av's scores (s -> s^4, same order) and the naive
    # union ranks every audio detection first, while a calibrated one does not care.
    squash = {n: (d.with_columns(pl.col("score") ** 4) if n == "av" else d) for n, d in systems.items()}
    sq_dev = {n: on_clips(d, dev) for n, d in squash.items()}
    sq_held = {n: on_clips(d, held) for n, d in squash.items()}
    print("  with av's scores squashed (s -> s^4):")
    for label, params in variants[:3]:
        print(line("  " + label, macro(union_table(params, sq_dev, truth_dev, sq_held), truth_held), best))

    print("\n3. mask_fusion (no fitting), dev-test")
    t1 = time.perf_counter()
    fused = make_stage({"type": "mask_fusion"}).fit_apply(Tables(systems=sys_held))["detections"]
    print(line(f"mask fusion ({time.perf_counter() - t1:.1f} s)", macro(fused, truth_held), best))
    support = fused.get_column("fuse_support").value_counts().sort("fuse_support").rows()
    print(f"  clusters by number of systems: {dict(support)} (naive union for contrast: "
          f"{macro(naive, truth_held):.4f})")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
