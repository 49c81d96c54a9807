"""calib score: the official DCASE 2026 Task 3 metrics, exactly, fast."""
from __future__ import annotations

import argparse

from calib.cli import add_scale_args
from calib.constants import PROTOCOLS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score a prediction folder against GT exactly as the official evaluator (both protocols)",
        description="Score a folder of predictions (<seq>.json or <seq>_inference.json) against a GT folder "
        "(<seq>_std.json, here or one folder below: a dataset root with split folders works) with the official "
        "algorithm of the chosen protocol, and print a per-class table. Both protocols find files by the same "
        "rule (calib/io/discover.py): prediction files without GT are skipped and GT clips without a prediction "
        "file are not scored, as officially, and both are listed; no prediction file matching any GT file, or "
        "two files for one clip, is an error (exit 2). Files are checked by the rules 'calib ingest' applies "
        "(calib/io/validate.py); what the official scripts silently skip (class ids outside 0..12) is skipped "
        "with a warning naming the file and annotation. "
        "dcase2026 (revision 2026-06-30, the final leaderboard metric): soft-IoU matching per frame and class, "
        "101-point AP at the IoU thresholds, Pearson of matched pairs. dcase2026-coco (revision 2026-04-02): "
        "pycocotools mask mAP over spherical-Gaussian renders, Pearson r and distance error of peak-matched pairs. "
        "Every number is the official script's to the last bit (golden vectors are a test). "
        "The fast engine caches GT maps and runs clips in "
        "parallel; the reference engine is the official algorithm step by step (the oracle).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  calib score runs/modelA data/gt --out metrics.json\n"
        "  calib score runs/modelA data/gt --iou-thresholds 0.5:0.05:0.95 --jobs 2 --cache .calib-cache\n"
        "  calib score runs/modelA data/gt --matches matches.parquet --report report/\n"
        "  calib score runs/modelA data/gt --protocol dcase2026-coco --sigma 6 --energy-thr 0.1\n"
        "  calib score runs/modelA data/gt --tie-order avx512   # what the official script prints on an AVX-512 CPU\n"
        "  calib score runs/modelA data/gt --backend dask --scheduler tcp://10.0.0.5:8786",
    )
    p.add_argument("pred", metavar="PRED_DIR", help="folder of prediction files (or a detections .parquet table)")
    p.add_argument("gt", metavar="GT_DIR", help="ground-truth folder (or a truth .parquet table)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="dcase2026")
    p.add_argument("--out", metavar="metrics.json", help="write the metrics (official keys; NaN as null)")
    p.add_argument("--iou-thresholds", metavar="SPEC",
                   help="'0.25,0.5,0.75' or start:step:end like 0.5:0.05:0.95 (default per protocol)")
    p.add_argument("--sigma", type=float, default=6.0, help="coco protocol: Gaussian sigma in degrees (default 6)")
    p.add_argument("--energy-thr", type=float, default=0.10, help="coco protocol: mask threshold x peak (default 0.10)")
    p.add_argument("--engine", choices=["fast", "reference"], default="fast")
    p.add_argument("--tie-order", choices=["avx2", "avx512", "stable"], default="avx2",
                   help="dcase2026: how tied scores are ordered. The official script's numpy.argsort orders ties "
                   "as the CPU's sort kernel does: avx2 (default) is the official machine's, so these are the "
                   "official numbers on any CPU; avx512 gives what the script prints on an AVX-512 CPU; stable is "
                   "numpy's stable sort. Whatever the choice, when tied scores differ in outcome the summary "
                   "(and metrics.json's tie_order_range) gives the mAP range over all three. dcase2026-coco sorts "
                   "stably (pycocotools), so there it changes nothing")
    add_scale_args(p, "clips (fast engine)")
    p.add_argument("--cache", metavar="DIR", help="folder for rendered GT maps (keyed by content hash)")
    p.add_argument("--matches", metavar="matches.parquet", help="write the per-prediction match table (dcase2026)")
    p.add_argument("--report", metavar="DIR", help="write diagnostics: per-class table, PR curves, IoU histogram, recall ceiling")
    p.add_argument("--system", help="with a detections table holding several systems: the one to score")
    p.set_defaults(func=run)


def _load(args):
    """(pred, gt, clips, system, GT clips not scored): folders are paired by score() itself;
    a table side becomes {clip: annotations} with every clip the table stands for (clips without
    rows included, so an empty prediction or GT clip counts as its file would)."""
    from pathlib import Path

    import polars as pl

    from calib.io.errors import InputError
    from calib.score import annotations_from_table, load_dir
    from calib.tables import read_table, table_clips

    if str(args.pred).endswith(".parquet"):
        dets = read_table(args.pred, "detections")
        systems = sorted(dets.get_column("system").unique().to_list())
        if args.system:
            dets = dets.filter(pl.col("system") == args.system)
        elif len(systems) > 1:
            raise SystemExit(f"calib score: {args.pred} holds systems {systems}; choose one with --system")
        pred = {c: [] for c in table_clips(args.pred)} | annotations_from_table(dets, "pred")
        system = args.system or (systems[0] if systems else "")
    else:
        system = Path(args.pred).name
        if not str(args.gt).endswith(".parquet"):
            # two folders: score() pairs the files itself (the official rules: the prediction
            # files that have GT), hashing GT files so cached ones are not parsed again
            return args.pred, args.gt, None, system, None
        pred = load_dir(args.pred, "pred", args.protocol)
    if str(args.gt).endswith(".parquet"):
        gt = {c: [] for c in table_clips(args.gt)} | annotations_from_table(read_table(args.gt, "truth"), "gt")
    else:
        gt = load_dir(args.gt, "gt", args.protocol)
    # a prediction folder is scored on the clips it has files for (as the official script does)
    clips = sorted((c for c in pred if c in gt), key=lambda c: c + ".json")
    if not clips:
        raise InputError(args.pred, "no prediction clip has ground truth",
                         detail=f"{len(pred)} prediction clip(s) (e.g. {', '.join(sorted(pred)[:3]) or 'none'}), "
                         f"{len(gt)} GT clip(s) in {args.gt} (e.g. {', '.join(sorted(gt)[:3]) or 'none'})")
    return pred, gt, clips, system, sorted(set(gt) - set(pred))


def tie_range_line(rng: dict | None) -> str | None:
    """One line on how far tied scores could move the mAP (None when no tie can change it)."""
    if not rng or not (rng["classes_with_mixed_ties"] or rng["micro_has_mixed_ties"]):
        return None
    orders = "/".join(rng["by_order"])
    where = ", ".join(rng["classes_with_mixed_ties"]) or "the micro list only"
    return (f"tied scores with different outcomes ({where}): over tie orders {orders}, "
            f"macro_mAP {rng['macro_mAP'][0]:.6f}..{rng['macro_mAP'][1]:.6f}, "
            f"micro_mAP {rng['micro_mAP'][0]:.6f}..{rng['micro_mAP'][1]:.6f} (reported: {rng['tie_order']})")


def run(args) -> int:
    import json

    from calib.cli import scale_from
    from calib.score import parse_thresholds, score
    from calib.score.report import metrics_json, per_class_table, write_report
    from calib.tables import atomic_path

    if args.matches and args.protocol != "dcase2026":
        raise SystemExit("calib score: --matches needs the dcase2026 protocol")
    pred, gt, clips, system, unscored_gt = _load(args)
    with scale_from(args):
        res = score(pred, gt, protocol=args.protocol, iou_thresholds=parse_thresholds(args.iou_thresholds),
                    engine=args.engine, jobs=args.jobs, cache_dir=args.cache, backend=args.backend,
                    scheduler=args.scheduler, sigma=args.sigma, energy_thr=args.energy_thr,
                    with_matches=args.protocol == "dcase2026", clips=clips, system=system, tie_order=args.tie_order)
    print(per_class_table(res, args.protocol))
    tie_line = tie_range_line(res.tie_order_range)
    if tie_line:
        print(tie_line)
    skipped = res.skipped
    if skipped:
        print(f"skipped {len(skipped)} prediction file(s) without GT: {', '.join(skipped[:10])}"
              + (" ..." if len(skipped) > 10 else ""))
    unscored_gt = res.unscored_gt if unscored_gt is None else unscored_gt
    if unscored_gt:
        print(f"not scored: {len(unscored_gt)} GT clip(s) without a prediction file, as the official scripts do: "
              f"{', '.join(unscored_gt[:10])}" + (" ..." if len(unscored_gt) > 10 else ""))
    if res.recall_ceiling:
        rc = res.recall_ceiling["overall"]
        print("recall ceiling (GT reachable by some same-class prediction): "
              + ", ".join(f"IoU>={k}: {v:.3f}" for k, v in rc.items()))
    if args.out:
        final, tmp = atomic_path(args.out)
        tmp.write_text(json.dumps(metrics_json(res), indent=1))
        tmp.replace(final)
        print(f"wrote {args.out}")
    if args.matches:
        write_table_free(res.matches, args.matches)
        print(f"wrote {args.matches} ({res.matches.height} predictions)")
    if args.report:
        files = write_report(res, args.report, args.protocol)
        print(f"wrote report to {args.report} ({len(files)} files)")
    return 0


def write_table_free(df, path) -> None:
    """A match table is not one of calib's input kinds: plain Parquet, written atomically."""
    from calib.tables import atomic_path

    final, tmp = atomic_path(path)
    df.write_parquet(tmp)
    tmp.replace(final)
