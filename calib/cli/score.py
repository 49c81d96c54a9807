"""``calib score``: exact official scoring of a folder of DCASE 2026 Task 3 predictions."""
from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Score a folder of per-clip prediction files against ground truth with one of the official
DCASE 2026 Task 3 protocols, giving the same numbers as the official scripts.

  dcase2026       (default; official revision of 2026-06-30, the final leaderboard metric)
                  soft-IoU AP at the IoU thresholds (default 0.25,0.5,0.75), macro and micro,
                  and Pearson r of matched maps. PRED_DIR holds <clip>.json; GT_DIR holds
                  <clip>_std.json, directly or one folder below.
  dcase2026-coco  (revision of 2026-04-02) COCO mask mAP of Gaussian energy maps thresholded at
                  --energy-thr of their peak (sigma --sigma degrees), plus Pearson r and distance
                  MAPE of peak-matched pairs. Predictions may be named <clip>_inference.json.

A prediction file without GT is skipped and listed; a malformed file stops the run with the
file, annotation and triplet named, and nothing is written.

The fast engine (default) caches rendered GT (in memory, and on disk with --cache DIR) and
scores clips in parallel (--jobs N; --backend dask --scheduler tcp://HOST:PORT for a Dask
cluster). --engine reference runs the official algorithm step by step (slow; for checking).

examples:
  calib score subm/ gt/ --out metrics.json
  calib score subm/ gt/ --iou-thresholds 0.5:0.05:0.95 --jobs 2 --cache .calib-cache
  calib score subm/ gt/ --matches matches.parquet --report report/
  calib score subm/ gt/ --protocol dcase2026-coco --out coco.json
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "score", help="score predictions with an official DCASE 2026 protocol (exact, fast)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pred_dir", help="folder of prediction files <clip>.json")
    p.add_argument("gt_dir", help="folder of ground-truth files <clip>_std.json (or one level below)")
    p.add_argument("--protocol", choices=("dcase2026", "dcase2026-coco"), default="dcase2026",
                   help="official protocol (default: dcase2026)")
    p.add_argument("--out", metavar="FILE", help="write the metrics JSON here (NaN written as null)")
    p.add_argument("--iou-thresholds", metavar="SPEC",
                   help="dcase2026 only: list '0.25,0.5' or range 'start:step:end' like 0.5:0.05:0.95 "
                        "(default 0.25,0.5,0.75)")
    p.add_argument("--sigma", type=float, default=6.0, help="coco protocol: blob sigma in degrees (default 6)")
    p.add_argument("--energy-thr", type=float, default=0.10,
                   help="coco protocol: mask threshold as a fraction of the map peak (default 0.10)")
    p.add_argument("--jobs", type=int, default=1, help="clips scored in parallel (default 1; -1: all cores)")
    p.add_argument("--engine", choices=("fast", "reference"), default="fast",
                   help="fast (default) or the literal, slow reference implementation")
    p.add_argument("--cache", metavar="DIR", help="keep rendered GT maps on disk here (reused across runs)")
    p.add_argument("--matches", metavar="FILE",
                   help="dcase2026: write one row per prediction (match, IoU, best IoU, Pearson, tp per "
                        "threshold) to this Parquet file")
    p.add_argument("--report", metavar="DIR",
                   help="write diagnostics: per-class tables, PR curves, IoU histogram, recall ceiling")
    p.add_argument("--backend", choices=("loky", "threading", "dask"), default="loky",
                   help="joblib backend for --jobs (dask needs --scheduler)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address for --backend dask")
    p.add_argument("--quiet", action="store_true", help="do not print the per-class table")
    p.set_defaults(func=run)


def _write_json_atomic(obj, path) -> None:
    import os

    import orjson

    from calib.tables import atomic_path

    final, tmp = atomic_path(path)
    try:
        tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_parquet_atomic(df, path) -> None:
    import os

    from calib.tables import atomic_path

    final, tmp = atomic_path(path)
    try:
        df.write_parquet(tmp, compression="zstd")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run(args) -> int:
    from calib.score import ScoreInputError, score
    from calib.score.report import console_table, write_report

    if args.matches and args.protocol != "dcase2026":
        print("calib score: error: --matches is available for the dcase2026 protocol only", file=sys.stderr)
        return 2
    try:
        result = score(args.pred_dir, args.gt_dir, protocol=args.protocol, iou_thresholds=args.iou_thresholds,
                       engine=args.engine, jobs=args.jobs, cache_dir=args.cache, backend=args.backend,
                       scheduler=args.scheduler, sigma=args.sigma, energy_thr=args.energy_thr,
                       with_matches=bool(args.matches))
    except (ScoreInputError, ValueError, OSError) as e:
        print(f"calib score: error: {e}", file=sys.stderr)
        return 2
    for name in result.skipped:
        print(f"calib score: skipped {name} (no ground truth)", file=sys.stderr)
    if not result.details.get("clips"):
        print("calib score: error: no prediction file has ground truth; nothing scored", file=sys.stderr)
        return 2
    if args.out:
        _write_json_atomic(result.metrics_json(), args.out)
    if args.matches:
        _write_parquet_atomic(result.matches, args.matches)
    if args.report:
        write_report(result, args.report)
    if not args.quiet:
        print(console_table(result))
    return 0
