"""Benchmark: features + 5-fold cross-fitted LightGBM reranker on 300k detections (target < 2 min
on 2 cores). Prints the time of each part.

    PYTHONPATH=. python tests/benchmarks/bench_rerank.py [--n 300000] [--points 30] [--threads 2]

The detections are made here, vectorized: a low-threshold-like system of 300k detections in
~2,000 clips, point counts from 1 to 4x --points (mean --points), a matchability signal in the peak
prominence and the score. Labels come from a match table built alongside, so the scorer is not
timed: what is timed is what `calib rerank fit` adds on top of scoring (label join, features,
cross-fitting, final fit, report).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import polars as pl
import pyarrow as pa


def make_detections(n: int, mean_points: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    per_clip = 150
    clip_idx = np.arange(n) // per_clip
    frame = (np.arange(n) % per_clip) // 5 + 0  # ~5 detections per frame
    counts = rng.integers(1, 2 * mean_points, n)
    total = int(counts.sum())
    row = np.repeat(np.arange(n), counts)
    cx = rng.uniform(0, 360, n)[row]
    cy = rng.uniform(10, 170, n)[row]
    x = np.mod(cx + rng.normal(0, 5, total), 360)
    y = np.clip(cy + rng.normal(0, 5, total), 0, 180)
    peaked = rng.random(n) < 0.4
    e = rng.uniform(0.05, 0.5, total)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    e[first[peaked]] = 1.0
    score = np.clip(rng.normal(0.3 + 0.15 * peaked, 0.2), 0.001, 0.999)
    best_iou = np.clip(0.4 * peaked + 0.3 * score + rng.normal(0, 0.1, n), 0, 1)

    pts = pa.StructArray.from_arrays([pa.array(x), pa.array(y), pa.array(e)], names=["x", "y", "e"])
    poly_off = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    polys = pa.LargeListArray.from_arrays(poly_off, pts)
    ann = pa.LargeListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int64)), polys)
    clips = np.char.add("clip", clip_idx.astype(str))
    det_id = np.arange(n) % per_clip
    dets = pl.DataFrame({
        "system": pl.Series(["lowthr"] * n), "clip": pl.Series(clips), "frame": pl.Series(frame, dtype=pl.Int64),
        "det_id": pl.Series(det_id, dtype=pl.Int64), "class_id": pl.Series(rng.integers(0, 13, n), dtype=pl.Int64),
        "score": pl.Series(score), "distance": pl.Series([None] * n, dtype=pl.Float64),
        "instance_id": pl.Series([None] * n, dtype=pl.Int64), "points": pl.from_arrow(ann),
        "extra": pl.Series([None] * n, dtype=pl.String),
    })
    match = pl.DataFrame({"system": dets["system"], "clip": dets["clip"], "det_id": dets["det_id"],
                          "best_iou": best_iou})
    return dets, match


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--points", type=int, default=30, help="mean points per detection")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--model", default="lightgbm")
    args = ap.parse_args()

    from calib.rerank.scoring import label_detections
    from calib.rerank.pipeline import fit_reranker
    from calib.tables import TRUTH
    import features as F

    t0 = time.perf_counter()
    dets, match = make_detections(args.n, args.points)
    n_points = int(dets.select(pl.col("points").list.eval(pl.element().list.len()).list.sum()).to_series().sum())
    print(f"data: {dets.height} detections, {n_points} points, {dets['clip'].n_unique()} clips "
          f"(made in {time.perf_counter() - t0:.1f} s; not counted)")
    print(f"cores visible: {os.cpu_count()}, threads used: {args.threads}")

    t = time.perf_counter()
    X = F.compute_features(label_detections(dets, match, 0.25).drop("label", "best_iou"))
    t_feat = time.perf_counter() - t
    print(f"features alone ({X.width} default features): {t_feat:.1f} s")

    t = time.perf_counter()
    res = fit_reranker(dets, pl.DataFrame(schema=TRUTH), match=match, folds=args.folds, score_map=False,
                       model=args.model, num_threads=args.threads)
    total = time.perf_counter() - t
    rep = res.report
    print(f"rerank fit (labels + features + {rep['cross_fitting']['folds']}-fold cross-fit + final fit + report): "
          f"{total:.1f} s  [final model {rep['n_iter']} trees; folds "
          f"{[f['n_iter'] for f in rep['cross_fitting']['per_fold']]}]")
    print(f"target: < 120 s on 2 cores -> {'PASS' if total < 120 else 'FAIL'}")


if __name__ == "__main__":
    main()
