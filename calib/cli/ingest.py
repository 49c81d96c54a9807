"""calib ingest: DCASE JSON (or SELD CSV / priors CSV) -> a typed Parquet table."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "ingest",
        help="read DCASE JSON predictions / GT (or teacher / priors CSV) into a typed Parquet table",
        description="Read a system's per-clip DCASE 2026 JSON files (every *.json of a folder, or given files; "
        "<seq>.json or <seq>_inference.json as the official baseline and SAID write them; a dataset root whose "
        "split sub-folders hold the files works too) into one detections table. With --truth read a GT folder "
        "(<seq>_std.json, here or in split sub-folders such as dev-test-sony/, kept in the 'split' column). "
        "With --teacher read SELD CSV files (a folder and its split sub-folders, e.g. metadata_dev/): STARSS22/23 "
        "metadata (frame,class,source,azimuth,elevation), DCASE 2024 polar with distance, Cartesian SELD outputs "
        "(x,y,z: multi-ACCDOA vectors need not be unit length); the layout chosen for each file is printed. "
        "With --priors read a class-prior CSV/Parquet.\n\n"
        "Every number is kept exactly (float64), and every clip is remembered, a file with an empty annotation "
        "list included, so 'calib export' gives the same files back and they score as the originals. "
        "Input is checked by the rules 'calib score' applies (calib/io/validate.py): a bad file stops with the "
        "file and annotation (or row) named and nothing written.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  calib ingest runs/modelA/ --out dets.parquet --system modelA\n"
        "  calib ingest data/gt --truth --out truth.parquet\n"
        "  calib ingest STARSS23/metadata_dev --teacher --out teacher.parquet\n"
        "  calib ingest seld_out/ --teacher --seld-format cart5 --out teacher.parquet\n"
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
                   help="drop annotations whose class id is outside 0..12 with a warning, as the official scorers "
                   "skip them (default: error)")
    p.add_argument("--seld-format", choices=["auto", "polar4", "polar5", "cart5", "polar6", "cart6", "cart7"],
                   default="auto",
                   help="teacher CSV column layout (default: detect from the column count, and for 5 or 6 columns "
                   "from the values: Cartesian when |x|,|y|,|z| <= 1 on every row); see calib/io/seld.py")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from calib.io.ingest import ingest
    from calib.tables import write_table

    progress = False if args.quiet else None
    if args.truth:
        kind = "truth"
        if len(args.paths) != 1:
            raise SystemExit("calib ingest --truth takes one GT folder")
    elif args.teacher:
        kind = "teacher"
    elif args.priors:
        kind = "priors"
        if len(args.paths) != 1:
            raise SystemExit("calib ingest --priors takes one file")
    else:
        kind = "detections"
    got = ingest(args.paths, kind, system=args.system, drop_unknown_classes=args.drop_unknown_classes,
                 seld_format=args.seld_format, progress=progress)
    for note in got.notes:
        print(note)
    path = write_table(got.table, args.out, kind, sources=got.sources, clips=got.clips)
    with_rows = got.table.get_column("clip").n_unique() if got.table.height else 0
    n_clips = len(set(got.clips) | set(got.table.get_column("clip").unique().to_list()))
    empty = f" ({n_clips - with_rows} without rows, kept)" if n_clips > with_rows else ""
    print(f"wrote {path}: {kind}, {got.table.height} rows, {n_clips} clips{empty}")
    return 0
