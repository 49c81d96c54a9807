"""calib stages: list every registered stage with its parameters."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "stages",
        help="list the stages a recipe can use, with their parameters",
        description="List every registered stage (its recipe 'type'), what it does and its parameters "
        "with their defaults. Give stage names to see their full description, the tables and columns "
        "they read and the columns they add.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  calib stages\n  calib stages compress nms\n  calib stages --json > stages.json",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these stages, described in full")
    p.add_argument("--json", action="store_true", help="machine-readable output (one object per stage)")
    p.set_defaults(func=run)


def stage_info(cls) -> dict:
    import inspect

    from calib.stages.base import summary

    return {
        "name": cls.name,
        "summary": summary(cls),
        "doc": inspect.getdoc(cls) or "",
        "params": {k: v for k, v in cls.param_defaults().items()},
        "needs_tables": list(cls.needs_tables),
        "needs_columns": list(cls.needs_columns),
        "adds_columns": list(cls.adds_columns),
        "learns": bool(cls.learns),
    }


def run(args) -> int:
    import json

    import sys

    from calib.stages.base import UnknownStageError, describe, get_stage, registry

    try:
        classes = [get_stage(n) for n in args.names] if args.names else list(registry().values())
    except UnknownStageError as e:
        print(f"calib stages: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([stage_info(c) for c in classes], indent=2, default=repr))
        return 0
    for cls in classes:
        if args.names:
            info = stage_info(cls)
            print(f"{cls.name}\n" + "\n".join("    " + line for line in info["doc"].splitlines()))
            params = ", ".join(f"{k}={v!r}" for k, v in info["params"].items()) or "(none)"
            print(f"    params: {params}")
            print(f"    reads tables: {', '.join(info['needs_tables'])}; columns: {', '.join(info['needs_columns']) or '-'}")
            print(f"    adds columns: {', '.join(info['adds_columns']) or '-'}; learns in fit: {'yes' if info['learns'] else 'no'}")
        else:
            print(describe(cls))
    return 0
