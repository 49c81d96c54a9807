"""The ``calib`` command: one sub-command per module under calib/cli/.

Each command module exposes ``add_parser(subparsers)`` and ``run(args) -> int`` and imports its
heavy dependencies inside ``run``, so ``calib --help`` stays fast. :data:`COMMANDS` lists every
module of ``calib/cli`` (a test checks it); one that fails to import fails ``calib`` loudly.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: optional modules -> (the extra of calib that installs them, what needs them)
EXTRAS = {
    "dask": ("dask", "a Dask cluster (--backend dask) needs Dask"),
    "distributed": ("dask", "a Dask cluster (--backend dask) needs Dask"),
    "torch": ("torch", "running a model needs PyTorch"),
    "soundfile": ("torch", "reading audio needs soundfile"),
}

# Order shown in --help: the pipeline's order.
COMMANDS = ("demo", "synth", "ingest", "export", "score", "rerank", "stages", "recipes", "run",
            "emit_ablation", "portfolio", "package", "adapt")

EPILOG = """\
typical flow (README.md walks it from the STAIRS26 folders to a submission package):
  calib synth data/ --clips 8 --frames 30          # rehearsal data shaped like STAIRS26: dev + eval clips
  calib score data/systems/lowthr data/gt          # a system's official metrics on the dev clips
  calib run decision-calibrated --data data/ --out runs/dc   # a recipe: stages, DCASE files, metrics
  calib portfolio grid.toml --data data/ --out portfolio/    # variants, honest estimates, up to 4 systems
  calib package portfolio/ --label Doe_ABC --track a --author "Doe, Jane, jane@abc.edu" --out submission/
working on tables:
  calib ingest data/systems/lowthr --out dets.parquet        # DCASE JSON -> typed Parquet
  calib ingest data/gt --truth --out truth.parquet
  calib export dets.parquet --out dcase/                     # Parquet -> one <seq>.json per clip
run 'calib COMMAND --help' for each command's options and examples."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calib",
        description="calib: post-hoc engine for DCASE 2026 Task 3 (STAIRS26) detections: typed tables, "
        "exact official scoring, rerankers, fusion, emission, submission portfolios.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:  # every one is part of calib: a module that fails to import is a bug, never skipped
        importlib.import_module(f"calib.cli.{name}").add_parser(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"calib {version('calib')}"
    except PackageNotFoundError:  # running from a source tree
        return "calib (source tree)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import warnings

    from calib.io.errors import InputError, InputWarning
    from calib.tables import TableError

    user_errors: tuple = (InputError, TableError)
    default_format = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None):
        # input warnings name the file and record already: show them as the command's own lines
        if issubclass(category, InputWarning):
            return f"calib {args.command}: warning: {message}\n"
        return default_format(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning
    try:
        return int(args.func(args) or 0)
    except user_errors as e:
        print(f"calib {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in EXTRAS:
            raise
        extra, what = EXTRAS[top]
        print(f"calib {args.command}: error: {what}, which is not installed (no module {top!r}); "
              f"install calib[{extra}]: pip install 'calib[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = default_format
        parallel = sys.modules.get("calib.score.parallel")
        if parallel is not None:  # the command's outputs are written: its idle workers can go now
            parallel.release_workers()


if __name__ == "__main__":
    raise SystemExit(main())
