"""Acceptance: does a reranker fitted on dev raise test macro mAP, and does the dev estimate know by
how much?

    PYTHONPATH=. python tests/benchmarks/rerank_gain.py [--clips 16] [--frames 300] [--seed 0] [--out DIR]

1. `calib synth` data (system ``lowthr``, a simulated low-threshold detector) into DIR;
2. ingest; dev = clips of the dev-train-* splits, test = clips of dev-test-*;
3. `rerank fit` on dev (LightGBM, 5 folds by clip): dev macro mAP (dcase2026 protocol) of the raw,
   in-sample and out-of-fold scores;
4. `rerank apply` on test: raw and reranked test macro mAP (the official records re-scored with the
   new scores, which tests/rerank/test_scoring_adapter.py shows equal to scoring the table;
   --check-files also exports the reranked test set and scores the JSON files);
5. checks: test gain >= 1.5x; the out-of-fold dev estimate of the gain within 25 % of the
   realised test gain (as a ratio, and as an absolute mAP difference); in-sample estimate higher.

Prints every number; exit status 0 when all checks pass.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import polars as pl


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--model", default="lightgbm")
    ap.add_argument("--features", default="default")
    ap.add_argument("--group", default="clip", choices=("clip", "site"))
    ap.add_argument("--jobs", type=int, default=2, help="scorer processes")
    ap.add_argument("--check-files", action="store_true",
                    help="also export the reranked test set and score the JSON files")
    ap.add_argument("--out", help="work folder (default: a temporary one); GT maps are cached there")
    args = ap.parse_args()

    import calib.rerank  # noqa: F401  (sets the OpenMP wait policy before LightGBM loads)
    from calib.io.dcase import export_table, ingest_predictions, ingest_truth
    from calib.rerank.pipeline import fit_reranker
    from calib.rerank.scoring import rescore, score_detections
    from calib.score import load_dir, score
    from fixtures.synth import generate

    work = Path(args.out or tempfile.mkdtemp(prefix="rerank_gain_"))
    cache = work / "gt-map-cache"
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = work / "synth"
    if not (data / "manifest.json").exists():
        generate(data, seed=args.seed, clips=args.clips, frames=args.frames, systems=("lowthr",))
    dets, _ = ingest_predictions([data / "systems" / "lowthr"], system="lowthr", progress=False)
    truth, _ = ingest_truth(data / "gt", progress=False)
    split = truth.select("clip", "split").unique()
    dets = dets.join(split, on="clip", how="left")
    is_dev, is_test = pl.col("split").str.starts_with("dev-train"), pl.col("split").str.starts_with("dev-test")
    dev, test = dets.filter(is_dev).drop("split"), dets.filter(is_test).drop("split")
    truth_dev, truth_test = truth.filter(is_dev), truth.filter(is_test)
    print(f"data: {args.clips} clips x {args.frames} frames (seed {args.seed}); dev {dev.height} detections in "
          f"{dev['clip'].n_unique()} clips, test {test.height} in {test['clip'].n_unique()} clips "
          f"[{time.perf_counter() - t0:.0f} s]")

    t = time.perf_counter()
    scored_dev = score_detections(dev, truth_dev, jobs=args.jobs, cache_dir=cache)
    print(f"scored dev (match table, labels) [{time.perf_counter() - t:.0f} s]")
    t = time.perf_counter()
    res = fit_reranker(dev, truth_dev, match=scored_dev, folds=args.folds, group=args.group, model=args.model,
                       features=args.features, seed=args.seed)
    res.save(work / "model")
    dm = res.report["dev_mAP"]["lowthr"]
    print(f"fit on dev: {res.report['n_labelled']} labelled, {res.report['positive_rate']:.1%} matchable, "
          f"{res.report['n_iter']} trees, {res.report['cross_fitting']['folds']} folds by {args.group} "
          f"[{time.perf_counter() - t:.0f} s]")
    print(f"dev macro mAP: raw {dm['raw']:.4f}  in-sample {dm['in_sample']:.4f}  out-of-fold {dm['out_of_fold']:.4f}")

    t = time.perf_counter()
    reranked = res.model.apply(test)
    scored_test = score_detections(test, truth_test, jobs=args.jobs, cache_dir=cache)
    raw_test = scored_test.results["lowthr"]["macro_mAP"]
    rr_test = rescore(scored_test, reranked, "score")["lowthr"]["macro_mAP"]
    print(f"test macro mAP: raw {raw_test:.4f}  reranked {rr_test:.4f} [{time.perf_counter() - t:.0f} s]")
    if args.check_files:
        # the same numbers from the DCASE JSON files the submission would hold
        export_table(reranked, work / "test_reranked", "pred", progress=False)
        gt_test = work / "gt_test"
        gt_test.mkdir(exist_ok=True)
        for d in sorted((data / "gt").iterdir()):
            if d.name.startswith("dev-test") and not (gt_test / d.name).exists():
                (gt_test / d.name).symlink_to(d.resolve())
        from_files = score(load_dir(work / "test_reranked", "pred"), load_dir(gt_test, "gt"),
                           with_matches=False)["macro_mAP"]
        print(f"  reranked test mAP scored from the exported JSON files: {from_files:.4f} "
              f"({'same' if from_files == rr_test else 'DIFFERENT'})")

    test_ratio = rr_test / raw_test
    oof_ratio = dm["out_of_fold"] / dm["raw"]
    ins_ratio = dm["in_sample"] / dm["raw"]
    test_abs = rr_test - raw_test
    oof_abs = dm["out_of_fold"] - dm["raw"]
    ins_abs = dm["in_sample"] - dm["raw"]
    rel_ratio = abs(oof_ratio - test_ratio) / test_ratio
    rel_abs = abs(oof_abs - test_abs) / abs(test_abs) if test_abs else float("inf")
    print(f"gain as a ratio:      test {test_ratio:.3f}x  out-of-fold estimate {oof_ratio:.3f}x "
          f"(off by {rel_ratio:.1%})  in-sample estimate {ins_ratio:.3f}x")
    print(f"gain as mAP points:   test {test_abs:+.4f}  out-of-fold estimate {oof_abs:+.4f} "
          f"(off by {rel_abs:.1%})  in-sample estimate {ins_abs:+.4f}")
    checks = {
        "test gain >= 1.5x": test_ratio >= 1.5,
        "out-of-fold ratio within 25% of test": rel_ratio <= 0.25,
        "out-of-fold mAP gain within 25% of test": rel_abs <= 0.25,
        "in-sample estimate higher than out-of-fold": ins_abs > oof_abs,
    }
    for name, ok in checks.items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    (work / "rerank_gain.json").write_text(json.dumps(
        {"dev": dm, "test": {"raw": raw_test, "reranked": rr_test}, "checks": checks}, indent=1, sort_keys=True))
    print(f"work folder: {work}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
