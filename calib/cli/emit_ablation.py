"""calib emit-ablation: compare emitters on one detections table against the truth."""
from __future__ import annotations

import argparse

from calib.cli import add_scale_args
from calib.constants import PROTOCOLS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "emit-ablation",
        help="score and size the same detections emitted several ways",
        description="Emit the detections of one system with each emitter (grid, dense, rowmajor, compress, "
        "hull, gaussian, ...) and print, side by side with the detections as given ('none'), the official "
        "macro mAP, its change relative to 'none', the macro Pearson r, the largest and mean clip file size "
        "and the total number of points. An emitter is NAME or NAME:key=value:key=value with the stage's "
        "parameters (see 'calib stages NAME'); values are JSON.\n\n"
        "Which to try: dense pixel masks -> compress (same mAP, several times smaller files); sparse peaks "
        "(a few points per detection, which the official renderer draws as specks) -> grid:spread=6, "
        "dense:spread=6 or gaussian (a region around the peaks); direction-only systems -> gaussian.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  calib emit-ablation dense.parquet --truth data/gt\n"
        "  calib emit-ablation sparse.parquet --truth truth.parquet --emitters grid:spread=6,dense:spread=6,hull\n"
        "  calib emit-ablation dets.parquet --truth data/gt --emitters compress:cell=6 --json ablation.json",
    )
    p.add_argument("detections", metavar="DETS.parquet", help="a detections table (calib ingest)")
    p.add_argument("--truth", required=True, metavar="GT",
                   help="a truth table (calib ingest --truth) or a GT folder of <seq>_std.json files")
    p.add_argument("--emitters", default="grid,dense,rowmajor,compress,hull", metavar="LIST",
                   help="comma-separated emitters (default: %(default)s)")
    p.add_argument("--system", metavar="NAME", help="the system to use when the table holds several")
    p.add_argument("--protocol", default="dcase2026", choices=PROTOCOLS,
                   help="scoring protocol (default: %(default)s)")
    p.add_argument("--json", metavar="OUT.json", help="also write the rows as JSON")
    add_scale_args(p, "emitters (or, when they are too few for a pool, each one's clips)")
    p.set_defaults(func=run)


def _split_emitters(text: str) -> list[str]:
    return [e.strip() for e in text.split(",") if e.strip()]


def run(args) -> int:
    import json
    import os
    from pathlib import Path

    import polars as pl

    from calib.cli import scale_from
    from calib.io.dcase import ingest_truth
    from calib.io.errors import InputError
    from calib.stages.emit.ablation import ablate, format_table
    from calib.tables import atomic_path, read_table

    dets = read_table(args.detections, "detections")
    systems = sorted(dets.get_column("system").unique().to_list())
    if args.system:
        if args.system not in systems:
            raise InputError(args.detections, f"no system {args.system!r}; the table has {systems}")
        dets = dets.filter(pl.col("system") == args.system)
    elif len(systems) > 1:
        raise InputError(args.detections, f"table holds several systems {systems}; choose one with --system")
    truth = ingest_truth(args.truth, progress=False)[0] if Path(args.truth).is_dir() else read_table(args.truth, "truth")
    try:
        with scale_from(args):
            table = ablate(dets, truth, _split_emitters(args.emitters), protocol=args.protocol)
    except (ValueError, KeyError) as e:
        raise InputError(args.emitters, str(e).strip("'\"")) from None
    print(format_table(table))
    if args.json:
        final, tmp = atomic_path(args.json)
        tmp.write_text(json.dumps(table.to_dicts(), indent=2))
        os.replace(tmp, final)
    return 0
