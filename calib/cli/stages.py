"""calib stages: list every registered stage with its parameters (type, default, constraint, unit,
meaning), and the gate keys any stage entry may carry."""
from __future__ import annotations

import argparse

#: the name under which ``calib stages`` describes the gate keys (unless a stage is registered so)
GATE = "gate"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "stages",
        help="list the stages a recipe can use, with their parameters",
        description="List every registered stage (its recipe 'type'), what it does and its parameters with their "
        "defaults. Give stage names to see their full description, every parameter's type, default, constraint, "
        "unit and meaning, the tables and columns they read and the columns they add; 'calib stages gate' explains "
        "the gate keys (gate, gate_folds, gate_seed, gate_confidence) any stage entry of a recipe may carry. A "
        "recipe is checked against these declarations when it is loaded.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  calib stages\n  calib stages compress nms\n  calib stages gate\n"
        "  calib stages --json > stages.json",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these stages (or 'gate'), described in full")
    p.add_argument("--json", action="store_true", help="machine-readable output: one object per stage, each "
                   "parameter with its type, default, constraint, unit and meaning (the gate keys last, "
                   "kind 'gate keys')")
    p.set_defaults(func=run)


def stage_info(cls) -> dict:
    import inspect

    from calib.stages.base import summary

    return {
        "name": cls.name,
        "kind": "stage",
        "summary": summary(cls),
        "doc": inspect.getdoc(cls) or "",
        "params": {k: v for k, v in cls.param_defaults().items()},
        "parameters": [p.info(k) for k, p in cls.PARAMS.items()],
        "needs_tables": list(cls.needs_tables),
        "needs_columns": list(cls.needs_columns),
        "adds_columns": list(cls.adds_columns),
        "learns": bool(cls.learns),
    }


GATE_SUMMARY = ("Keys any stage entry may carry: gate = \"per_class\" (or \"global\") applies the stage only to the "
                "classes where it gains out-of-fold on the fit clips.")


def gate_info() -> dict:
    from calib.stages import gate

    return {
        "name": GATE,
        "kind": "gate keys",
        "summary": GATE_SUMMARY,
        "doc": (gate.__doc__ or "").strip(),
        "params": {k: p.default for k, p in gate.GATE_KEYS.items()},
        "parameters": [p.info(k) for k, p in gate.GATE_KEYS.items()],
    }


def run(args) -> int:
    import json
    import sys

    from calib.stages.base import STAGES, UnknownStageError, describe, describe_params, get_stage, registry
    from calib.stages.gate import GATE_KEYS

    try:
        wanted = args.names or list(registry())
        entries = [None if n == GATE and n not in STAGES.names() else get_stage(n) for n in wanted]
    except UnknownStageError as e:
        print(f"calib stages: error: {e} (or '{GATE}': the gate keys)", file=sys.stderr)
        return 2
    if args.json:
        infos = [gate_info() if cls is None else stage_info(cls) for cls in entries]
        if not args.names:
            infos.append(gate_info())
        print(json.dumps(infos, indent=2, default=repr))
        return 0
    for cls in entries:
        if cls is None:
            print(f"{GATE} (keys of any stage entry)\n    {GATE_SUMMARY}\n    parameters:")
            print("\n".join(describe_params(GATE_KEYS, "      ")))
            print("    how the gate decides: the docstring of calib/stages/gate.py (and README.md on gating)")
        elif args.names:
            info = stage_info(cls)
            print(f"{cls.name}\n" + "\n".join("    " + line for line in info["doc"].splitlines()))
            print("    parameters:" if cls.PARAMS else "    parameters: (none)")
            print("\n".join(describe_params(cls.PARAMS, "      ")))
            print(f"    reads tables: {', '.join(info['needs_tables'])}; columns: {', '.join(info['needs_columns']) or '-'}")
            print(f"    adds columns: {', '.join(info['adds_columns']) or '-'}; learns in fit: {'yes' if info['learns'] else 'no'}")
        else:
            print(describe(cls))
    if not args.names:
        keys = ", ".join(f"{k}={p.default!r}" for k, p in GATE_KEYS.items())
        print(f"\ngate keys, on any stage entry ('calib stages {GATE}' explains them):\n    {keys}")
    return 0
