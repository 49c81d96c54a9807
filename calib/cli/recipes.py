"""calib recipes: list, show, copy and check recipes."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "recipes",
        help="list the shipped recipes; show, copy or check one",
        description="Recipes are TOML (or YAML) files naming the inputs, an ordered list of stages (type = a stage "
        "name from 'calib stages', plus its parameters), the emitter and the scoring protocol. calib ships the "
        "pipelines of five technical reports; copy one and edit it, or run it as is on data laid out as "
        "'calib synth' writes it (gt/, systems/<name>/, teacher/, priors.csv).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  calib recipes                                  # list\n"
        "  calib recipes show decision-calibrated         # print it\n"
        "  calib recipes copy decision-calibrated my.toml # start your own\n"
        "  calib recipes check my.toml                    # validate (names the bad key, e.g. stages[2].alpha_x)\n",
    )
    p.add_argument("action", nargs="?", default="list", choices=["list", "show", "copy", "check"])
    p.add_argument("args", nargs="*", metavar="ARG", help="show NAME | copy NAME DEST | check FILE...")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from calib.recipe import RecipeError, dump_recipe, load_recipe, shipped_recipes
    from calib.recipe.io import read_document

    if args.action == "list":
        for name, path in shipped_recipes().items():
            doc = read_document(path)
            first = (doc.get("description") or "").strip().splitlines()
            print(f"{name}: {first[0] if first else ''}")
        return 0
    if args.action == "show":
        if len(args.args) != 1:
            print("usage: calib recipes show NAME", file=sys.stderr)
            return 2
        from calib.recipe import resolve

        print(resolve(args.args[0]).read_text(), end="")
        return 0
    if args.action == "copy":
        if len(args.args) != 2:
            print("usage: calib recipes copy NAME DEST", file=sys.stderr)
            return 2
        from pathlib import Path

        from calib.recipe import resolve

        src, dest = resolve(args.args[0]), Path(args.args[1])
        if dest.exists():
            print(f"calib recipes: {dest} exists; not overwriting", file=sys.stderr)
            return 2
        if dest.suffix.lower() in (".yaml", ".yml"):
            dump_recipe(load_recipe(src), dest)
        else:
            dest.write_text(src.read_text())
        print(f"wrote {dest}")
        return 0
    if not args.args:
        print("usage: calib recipes check FILE...", file=sys.stderr)
        return 2
    bad = 0
    for ref in args.args:
        try:
            r = load_recipe(ref)
        except RecipeError as e:
            print(f"error: {e}", file=sys.stderr)
            bad += 1
            continue
        stages = " -> ".join(f"{s.address}" + ("" if s.enabled else " (off)") for s in r.stages)
        print(f"{ref}: ok ({r.name}: {stages or 'no stages'}{' -> emit ' + r.emit.type if r.emit else ''})")
    return 1 if bad else 0
