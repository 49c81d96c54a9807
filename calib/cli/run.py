"""calib run: run a recipe (stages cached), write detections, DCASE files, metrics and a report."""
from __future__ import annotations

import argparse

from calib.cli import add_scale_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a recipe: inputs -> stages -> emitted DCASE files, metrics, report (cached per stage)",
        description="Run a recipe (a TOML/YAML file, or the name of a shipped recipe: see 'calib recipes'). "
        "Every stage's output is cached under OUT/.cache (or --cache) by the inputs' content, the stage, its "
        "parameters and everything before it, so re-running after changing one parameter recomputes only that "
        "stage and the ones after it; the log says which stages were cached. Stages that learn are fit on the "
        "recipe's 'fit' GT splits and applied to every clip (evaluation clips without GT included); the "
        "'evaluate' splits are scored.\n\n"
        "Writes OUT/detections.parquet (final table), OUT/dcase/<clip>.json (exported files), OUT/metrics.json "
        "(official metrics of the scored clips), OUT/state/ (learned state of fitted stages), OUT/recipe.toml "
        "(the recipe as run), OUT/run.json and OUT/report.md. A previous run's output that this run does not "
        "write (metrics.json after --no-score) is removed.\n\n"
        "A recipe is data: it cannot make calib import code. A stage parameter naming a module (the rerank "
        "stage's feature_modules) needs --allow-import MODULE, unless an installed package declares the module "
        "as a 'calib.features' entry point. Cached learned state is JSON, npz, Parquet and model text, never a "
        "pickle.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples (data/ laid out as 'calib synth data/' writes it):\n"
        "  calib run decision-calibrated --data data/ --out runs/dc          # a shipped recipe\n"
        "  calib run decision-calibrated --data data/ --out runs/dc --set stages.cap.per_class=3 "
        "--set stages.rerank.enabled=false\n"
        "  calib run decision-calibrated --data data/ --out runs/dc --no-score   # faster iterations\n"
        "  calib run decision-calibrated --data data/ --out runs/dc --jobs 2     # clips scored over 2 processes\n"
        "  calib recipes copy decision-calibrated data/mine.toml             # a recipe of your own, to edit\n"
        "  calib run data/mine.toml --out runs/mine --cache runs/cache       # paths relative to the recipe\n"
        "\n"
        "--set addresses: stages by their name (or type when unnamed) or stages[i], then a parameter or "
        "'enabled'; emit.<parameter>; any other key (splits.fit, inputs.gt, inputs.systems.<name>). "
        "'calib stages NAME' lists a stage's parameters.\n",
    )
    p.add_argument("recipe", metavar="RECIPE", help="recipe file (.toml, .yaml) or shipped recipe name")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<recipe name>)")
    p.add_argument("--data", metavar="DIR",
                   help="folder the recipe's relative input paths start from (default: the recipe file's folder; "
                   "for a shipped recipe, the current folder)")
    p.add_argument("--cache", metavar="DIR", help="stage cache folder (default: OUT/.cache); share it between runs")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="ADDRESS=VALUE",
                   help="override a recipe value before running, e.g. stages.cap.per_class=3, "
                   "stages.rerank.enabled=false, emit.n=5, splits.fit=[\"dev-train-sony\"] (values read as "
                   "TOML, a bare word as a string; repeatable)")
    p.add_argument("--allow-import", action="append", default=[], metavar="MODULE",
                   help="let the recipe import MODULE (or the modules of package MODULE), e.g. the feature module a "
                   "rerank stage names in feature_modules; repeatable. Only for code you trust")
    p.add_argument("--no-score", action="store_true",
                   help="skip scoring (faster iterations): no metrics.json, and a previous run's is removed")
    p.add_argument("--quiet", action="store_true", help="print only the final line (and no progress bars)")
    add_scale_args(p, "the scoring and labelling of clips", quiet=False)
    p.set_defaults(func=run)


def load_with_overrides(ref: str, sets: list[str]):
    """(recipe, source path, whether it is shipped) of a recipe file/name with --set overrides applied."""
    from calib.recipe import Recipe, resolve, shipped_recipes
    from calib.recipe.address import parse_assignment, set_values
    from calib.recipe.io import read_document

    path = resolve(ref)
    doc = read_document(path)
    if sets:
        doc = set_values(doc, dict(parse_assignment(s) for s in sets))
    shipped = path in shipped_recipes().values()
    return Recipe.from_dict(doc, source=str(path)), path, shipped


def run(args) -> int:
    from pathlib import Path

    from calib.cli import scale_from
    from calib.recipe import run_recipe

    from calib.io.clipnames import is_safe_clip_name
    from calib.recipe import RecipeError

    recipe, path, shipped = load_with_overrides(args.recipe, args.sets)
    base = Path(args.data) if args.data else (Path.cwd() if shipped else path.parent)
    if not args.out and not is_safe_clip_name(recipe.name):  # the name would become a folder under runs/
        raise RecipeError("name", f"{recipe.name!r} cannot name the default output folder runs/<name> (one path "
                          "component of letters, digits, '_', '-', '.'); pass --out DIR", str(path))
    out = Path(args.out) if args.out else Path("runs") / recipe.name
    log = (lambda s: None) if args.quiet else print
    with scale_from(args):
        res = run_recipe(recipe, out, base_dir=base, cache_dir=args.cache, source=str(path), log=log,
                         score=not args.no_score, allow_imports=args.allow_import)
    cached = [r.address for r in res.chain.records if r.cached]
    if args.quiet:
        print(f"wrote {out} ({len(cached)}/{len(res.chain.records)} stages cached)")
    return 0
