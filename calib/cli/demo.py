"""calib demo: the whole chain on embedded synthetic data, no downloads.

synth -> ingest -> score the raw system -> portfolio of recipe variants (matchability rerank,
cross-fitted; recognition-prior fusion; caps; grid emission) with honest estimates -> package,
then the before/after table.
"""
from __future__ import annotations

import argparse

GRID = """\
# The demo's portfolio: the decision-calibrated pipeline (with recognition-prior fusion) with its
# dev-fitted reranker on or off, and one or three detections kept per frame and class.
base = "recipe.toml"
folds = 3
seed = 0
max_systems = 4

[axes]
"stages.rerank.enabled" = [true, false]
"stages.cap.per_class" = [1, 3]
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the full chain on built-in synthetic data and print the before/after table",
        description="Generate a synthetic STAIRS26-like dev set, ingest the simulated low-threshold system, score "
        "it, build a portfolio of post-processing variants (matchability rerank with cross-fitted estimates, "
        "recognition-prior fusion, caps, grid emission), choose up to 4 hedged systems, package them, and print "
        "the before/after table. Everything it writes lands under OUT_DIR.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  calib demo demo-out                            # a minute or two on 2 cores\n"
        "  calib demo quick-look --clips 4 --frames 30    # a quicker look",
    )
    p.add_argument("out", metavar="OUT_DIR")
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed (default 0)")
    p.add_argument("--clips", type=int, default=12, help="synthetic clips (default 12, over 4 split folders)")
    p.add_argument("--frames", type=int, default=80, help="frames per clip at 10 fps (default 80)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR/data")
    p.set_defaults(func=run)


def _fmt(v) -> str:
    return "   n/a" if v is None or v != v else f"{v:.4f}"


def run(args) -> int:
    import json
    import shutil
    import time
    from pathlib import Path

    import polars as pl

    from calib.io.dcase import ingest_predictions, ingest_truth
    from calib.package import build_package
    from calib.portfolio import load_grid, run_portfolio
    from calib.recipe import load_recipe, dump_recipe, shipped_recipes
    from calib.score import score_tables
    from calib.tables import write_table
    from fixtures.synth import generate

    t0 = time.perf_counter()
    out = Path(args.out)
    data = out / "data"
    if data.exists():
        if not args.overwrite and any(data.iterdir()):
            print(f"{data} exists: reusing it (pass --overwrite to regenerate)")
        else:
            shutil.rmtree(data)
    if not data.exists():
        print(f"[1/6] synth: {args.clips} clips x {args.frames} frames, seed {args.seed} -> {data}")
        generate(data, seed=args.seed, clips=args.clips, frames=args.frames,
                 systems=["lowthr", "audio", "av"], progress=True)

    print("[2/6] ingest the low-threshold system and the ground truth -> Parquet")
    dets, src = ingest_predictions([data / "systems" / "lowthr"], "lowthr", progress=False)
    truth, tsrc = ingest_truth(data / "gt", progress=False)
    write_table(dets, out / "tables" / "lowthr.parquet", "detections", sources=src)
    write_table(truth, out / "tables" / "truth.parquet", "truth", sources=tsrc)

    print("[3/6] score the raw system (dcase2026, the official final metric)")
    test_clips = truth.filter(pl.col("split").str.starts_with("dev-test")).get_column("clip").unique()
    raw_all = score_tables(dets, truth).metrics
    raw_test = score_tables(dets.filter(pl.col("clip").is_in(test_clips)),
                            truth.filter(pl.col("clip").is_in(test_clips))).metrics
    (out / "raw_metrics.json").write_text(json.dumps(raw_all, indent=1))

    print("[4/6] portfolio: prior fusion, then rerank on/off x cap 1/3, each with in-sample, out-of-fold and site-held-out mAP")
    recipe = load_recipe(shipped_recipes()["decision-calibrated"])
    doc = recipe.to_dict()
    # recognition-prior fusion before the reranker, fed by the synthetic priors
    doc["inputs"]["priors"] = "priors.csv"
    doc["stages"].insert(1, {"type": "prior_fusion", "alpha": 0.5})
    dump_recipe(doc, data / "recipe.toml")
    (data / "grid.toml").write_text(GRID)
    grid, base = load_grid(data / "grid.toml")
    pf = run_portfolio(grid, base, out / "portfolio", base_dir=data, grid_source=str(data / "grid.toml"), log=print)

    print("[5/6] package the chosen systems (a rehearsal package on the dev clips)")
    pkg = build_package(out / "portfolio", out / "submission", label="Demo_CALIB", track="a",
                        authors=[{"lastname": "Demo", "firstname": "Calib", "email": "demo@example.org"}],
                        clips="dev", make_zip=True)

    print("[6/6] before / after (macro mAP, dcase2026; dev-test = clips never fit on)\n")
    rows = json.loads((out / "portfolio" / "estimates.json").read_text())
    chosen = {c.name: c.role for c in pf.chosen}
    header = f"{'system':<44} {'in-sample':>9} {'out-of-fold':>11} {'site-held-out':>13}  role"
    lines = [header, "-" * len(header),
             f"{'raw lowthr (no post-processing)':<44} {_fmt(raw_all['macro_mAP']):>9} {_fmt(raw_all['macro_mAP']):>11} "
             f"{'':>13}  baseline (dev-test only: {_fmt(raw_test['macro_mAP'])})"]
    for r in rows:
        label = f"{r['variant']} {r['settings']}"[:44]
        lines.append(f"{label:<44} {_fmt(r.get('in_sample_mAP')):>9} {_fmt(r.get('oof_mAP')):>11} "
                     f"{_fmt(r.get('site_mAP')):>13}  {chosen.get(r['variant'], '')}")
    table = "\n".join(lines)
    print(table)
    (out / "demo_table.txt").write_text(table + "\n")
    print(f"\nsubmission: {pkg.out_dir} ({len(pkg.systems)} systems)" + (f", {pkg.zip_path}" if pkg.zip_path else ""))
    print(f"report: {out / 'portfolio' / 'report.md'}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0
