"""calib ingest: DCASE JSON (or SELD CSV / priors CSV) -> a typed Parquet table."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "ingest",
        help="read DCASE JSON predictions / GT (or teacher / priors CSV) into a typed Parquet table",
        description="Read a system's per-clip DCASE 2026 JSON files (every *.json of a folder, or given files) "
        "into one detections table; with --truth read a GT folder (<seq>_std.json, split sub-folders such as "
        "dev-test-sony/ kept in the 'split' column); with --teacher read SELD CSV files (4-col 2023, 6-col 2024, "
        "Cartesian 6/7-col); with --priors read a class-prior CSV/Parquet. Every number is kept exactly "
        "(float64), so 'calib export' gives the same annotations back.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  calib ingest runs/modelA/ --out dets.parquet --system modelA\n"
        "  calib ingest data/gt --truth --out truth.parquet\n"
        "  calib ingest data/teacher/ --teacher --out teacher.parquet\n"
        "  calib ingest data/priors.csv --priors --out priors.parquet",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to read")
    p.add_argument("--out", required=True, metavar="TABLE.parquet", help="Parquet file to write (atomically)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--truth", action="store_true", help="PATH is a ground-truth folder")
    kind.add_argument("--teacher", action="store_true", help="PATHs are SELD CSV teacher outputs (<clip>.csv)")
    kind.add_argument("--priors", action="store_true", help="PATH is a class-prior table (CSV or Parquet)")
    p.add_argument("--system", metavar="NAME", help="system name stored in the table (default: the folder name)")
    p.add_argument("--drop-unknown-classes", action="store_true",
                   help="drop annotations whose class id is outside 0..12 with a warning (default: error)")
    p.add_argument("--seld-format", choices=["auto", "polar4", "polar6", "cart6", "cart7"], default="auto",
                   help="teacher CSV column layout (default: detect from the column count)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from calib.tables import write_table

    progress = False if args.quiet else None
    if args.truth:
        from calib.io.dcase import ingest_truth

        if len(args.paths) != 1:
            raise SystemExit("calib ingest --truth takes one GT folder")
        df, sources = ingest_truth(args.paths[0], drop_unknown_classes=args.drop_unknown_classes, progress=progress)
        kind = "truth"
    elif args.teacher:
        from calib.io.seld import read_teacher

        df, sources = read_teacher(args.paths, fmt=args.seld_format)
        kind = "teacher"
    elif args.priors:
        from calib.io.priors import read_priors

        if len(args.paths) != 1:
            raise SystemExit("calib ingest --priors takes one file")
        df, sources = read_priors(args.paths[0])
        kind = "priors"
    else:
        from calib.io.dcase import ingest_predictions

        df, sources = ingest_predictions(args.paths, args.system, drop_unknown_classes=args.drop_unknown_classes,
                                         progress=progress)
        kind = "detections"
    path = write_table(df, args.out, kind, sources=sources)
    n_clips = df.get_column("clip").n_unique() if len(df) else 0
    print(f"wrote {path}: {kind}, {len(df)} rows, {n_clips} clips")
    return 0
