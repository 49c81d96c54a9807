"""calib export: a detections (or truth) table -> one DCASE JSON file per clip."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a table back to DCASE JSON, one <seq>.json per clip",
        description="Write a detections table as one <seq>.json per clip (a truth table as <split>/<seq>_std.json). "
        "The 'score' column is what gets written (after 'calib rerank apply' it is the reranked score). "
        "Every clip the table stands for gets a file, an empty annotation list where it has no rows (the clip "
        "list kept by 'calib ingest'), so the folder scores as the ingested one did. Clip names must be single "
        "safe path components (checked before anything is written). Files are staged and moved into place only "
        "when every clip is within the 20 MiB limit, so a failure leaves nothing behind.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  calib export reranked.parquet --out submission/ --system modelA",
    )
    p.add_argument("table", metavar="TABLE.parquet")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--system", metavar="NAME", help="export only this system (required when the table holds several)")
    p.add_argument("--no-size-limit", action="store_true",
                   help="allow files over 20 MiB (not valid for a submission)")
    p.add_argument("--size-guard", action="store_true",
                   help="coarsen the masks of any clip that would exceed 20 MiB (documented order in calib/stages/emit/guard.py) "
                   "instead of failing, and report what was coarsened")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import polars as pl

    from calib.constants import MAX_FILE_BYTES
    from calib.io.dcase import export_table
    from calib.io.errors import InputError
    from calib.tables import read_table, table_clips, table_kind

    df = read_table(args.table)
    kind = table_kind(args.table)
    clips = table_clips(args.table)
    if kind not in ("detections", "truth"):
        raise InputError(args.table, f"a {kind or 'non-calib'} table cannot be exported as DCASE JSON")
    if args.system:
        if kind != "detections":
            raise InputError(args.table, "--system applies to detections tables")
        systems = df.get_column("system").unique().to_list()
        if args.system not in systems:
            raise InputError(args.table, f"no system {args.system!r}; the table has {sorted(systems)}")
        df = df.filter(pl.col("system") == args.system)
    if args.size_guard:
        if kind != "detections" or args.no_size_limit:
            raise InputError(args.table, "--size-guard applies to detections exported under the 20 MiB limit")
        from calib.stages.emit.guard import export_guarded

        files, guard = export_guarded(df, args.out, clips=clips, progress=False if args.quiet else None,
                                      where=str(args.table))
        print(guard.summary())
        print(f"wrote {len(files)} file(s) to {args.out}")
        return 0
    files = export_table(df, args.out, "pred" if kind == "detections" else "gt", clips=clips,
                         max_bytes=None if args.no_size_limit else MAX_FILE_BYTES,
                         progress=False if args.quiet else None, where=str(args.table))
    with_rows = df.get_column("clip").n_unique() if df.height else 0
    empty = f" ({len(files) - with_rows} with an empty annotation list)" if len(files) > with_rows else ""
    print(f"wrote {len(files)} file(s) to {args.out}{empty}")
    return 0
