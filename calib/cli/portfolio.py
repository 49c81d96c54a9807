"""calib portfolio: estimate every variant of a grid honestly and choose up to four systems."""
from __future__ import annotations

import argparse

from calib.cli import add_scale_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "portfolio",
        help="run a grid of recipe variants, estimate each honestly, choose up to 4 systems, report",
        description="A grid file names a base recipe and axes of values (recipe addresses such as "
        "\"stages.rerank.enabled\" = [true, false] or \"stages.cap.per_class\" = [1, 3]); every combination is a variant. "
        "Each variant is estimated three ways on the dev clips (the labeled clips of its fit and evaluate splits): "
        "in-sample (stages fit on all dev clips), out-of-fold (K clip folds: fit on K-1, score the held-out fold, "
        "pooled) and site-held-out (fit on one site's clips, e.g. Sony, scored on the other's, e.g. TAU). Up to 4 "
        "systems are chosen: the best out-of-fold estimate, then hedges that avoid dev-fitted components whose "
        "in-sample minus out-of-fold gap flags them as fragile, the best across sites, and the best with nothing "
        "fitted on dev. Stage outputs are cached (OUT/.cache), so variants share their common stages.\n\n"
        "Writes OUT/portfolio.json, OUT/estimates.{json,csv}, OUT/variants/<v>/ (recipe.toml, detections.parquet, "
        "metrics.json), OUT/report.md and PNG plots. Then: calib package OUT --label Lastname_INST --track a.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="grid file example (grid.toml):\n"
        "  base = \"decision-calibrated\"      # recipe file (relative to the grid) or shipped name\n"
        "  folds = 3                         # clip folds of the out-of-fold estimate\n"
        "  [site]                            # site-held-out: fit on the dev clips of the splits\n"
        "  fit = \"sony\"                      # named like this, score those named like this\n"
        "  score = \"tau\"\n"
        "  [axes]                            # recipe addresses, as for calib run --set\n"
        "  \"stages.rerank.enabled\" = [true, false]\n"
        "  # \"stages.cap.per_class\" = [1, 3]  # a second axis: 4 variants, every combination\n\n"
        "example (data/ laid out as 'calib synth data/' writes it):\n"
        "  calib portfolio grid.toml --data data/ --out portfolio/\n"
        "\n"
        "On a big set, --jobs N runs the variants' chains over N processes, and --backend dask --scheduler ADDRESS "
        "on a Dask cluster (its workers need the same paths); on a set too small to pay for starting processes, "
        "--jobs 2 or more runs the chains and the estimates on two threads here. The outputs are the same bytes "
        "either way.\n",
    )
    p.add_argument("grid", metavar="GRID.toml")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--data", metavar="DIR",
                   help="folder the recipe's relative input paths start from (default: the base recipe's folder; "
                   "for a shipped recipe, the current folder)")
    p.add_argument("--cache", metavar="DIR", help="stage cache folder (default: OUT/.cache)")
    p.add_argument("--allow-import", action="append", default=[], metavar="MODULE",
                   help="let the recipes import MODULE (or the modules of package MODULE), e.g. the feature module a "
                   "rerank stage names in feature_modules; repeatable. A recipe is data: without this flag (or a "
                   "'calib.features' entry point of an installed package) it cannot import anything")
    p.add_argument("--quiet", action="store_true", help="print only the chosen systems (and no progress bars)")
    add_scale_args(p, "the variants' chains (in-sample, folds, site)", quiet=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from calib.cli import scale_from
    from calib.portfolio import load_grid, run_portfolio
    from calib.recipe import shipped_recipes

    grid, base = load_grid(args.grid)
    shipped = base in shipped_recipes().values()
    data = Path(args.data) if args.data else (Path.cwd() if shipped else base.parent)
    with scale_from(args):
        res = run_portfolio(grid, base, args.out, base_dir=data, cache_dir=args.cache, grid_source=args.grid,
                            log=(lambda s: None) if args.quiet else print, allow_imports=args.allow_import)
    if args.quiet:
        for i, c in enumerate(res.chosen, start=1):
            print(f"system {i}: {c.name} ({c.role})")
    print(f"wrote {args.out}: report.md, portfolio.json ({len(res.chosen)} system(s) chosen of {len(res.results)})")
    return 0
