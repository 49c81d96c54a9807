"""calib adapt: run a torch model (through a named adapter) over audio files into a calib table."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """\
how a checkpoint becomes a model:
  default (safe)  the checkpoint is a state_dict (torch.save(model.state_dict(), F), or a dict holding one
                  under 'state_dict' / 'model' / 'model_state_dict'), read with torch.load(weights_only=True);
                  --model-config gives the architecture: {"architecture": NAME, "params": {...}} where NAME is
                  an architecture the adapter ships (see --list) or an import path 'package.module:factory'
                  of your own code, called as factory(**params); a model config is data, so that module is
                  imported only with --allow-import package.module.
  --trust-checkpoint  also accept a TorchScript archive or a torch.export program (.pt2) (these can run code
                  from the file). A pickled nn.Module (torch.save(model)) is never read: save its state_dict.

examples:
  calib adapt --list
  calib adapt audio-prior --checkpoint prior.pt --model-config prior.json --input audio/ --out priors.parquet
  calib adapt accdoa --checkpoint seld.pt --model-config '{"architecture": "mymodels:SeldNet"}' \\
      --allow-import mymodels --input audio/ --out teacher.parquet --param acs=true --param threshold=0.3 \\
      --device cuda
  calib adapt energy-instance --checkpoint inst.ts --trust-checkpoint --input audio/ --out dets.parquet \\
      --param points=grid --param distance_scale=100"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "adapt",
        help="run a torch model through an adapter (energy-instance, accdoa, audio-prior, plug-ins) into a table",
        description="Run a model checkpoint over audio (or feature) files with a named adapter and write the "
        "table it yields: energy-instance -> detections, accdoa -> teacher directions, audio-prior -> class "
        "priors. Runs under torch.inference_mode, with autocast mixed precision on GPU; checkpoints are read "
        "with torch.load(weights_only=True). Packages add adapters through the 'calib.adapters' entry-point "
        "group. Needs the torch extra (pip install 'calib[torch]').",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="adapter name (see --list)")
    p.add_argument("--list", action="store_true", help="list the adapters found, with their parameters, and exit")
    p.add_argument("--checkpoint", metavar="FILE", help="model checkpoint (state_dict; see below)")
    p.add_argument("--input", nargs="+", metavar="PATH", help="input files, or folders whose files the adapter reads "
                   "(clip name = file stem; frames are the 10-fps label frames)")
    p.add_argument("--out", metavar="TABLE.parquet", help="table to write (atomically)")
    p.add_argument("--device", metavar="cuda|cpu", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="model inputs per forward pass (default 8)")
    p.add_argument("--model-config", metavar="JSON", help="architecture of a state_dict checkpoint: a JSON file or "
                   'inline JSON {"architecture": ..., "params": {...}}')
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow TorchScript / torch.export checkpoints (they can run code: only for files you trust); "
                   "pickled modules are never read")
    p.add_argument("--allow-import", action="append", default=[], metavar="MODULE",
                   help="let the model config's 'package.module:factory' architecture import MODULE (or a module of "
                   "package MODULE); repeatable. Only for code you trust")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 (or fp16) autocast on GPU, fp32 on CPU (default)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="adapter parameter (repeatable); VALUE is read as JSON when it parses, else as a string")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_params(items: list[str]) -> dict:
    from calib.adapters.base import AdapterError

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AdapterError(f"--param {item!r}: expected KEY=VALUE")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def parse_model_config(text: str | None):
    from calib.adapters.base import AdapterError

    if text is None:
        return None
    path = Path(text)
    if not text.lstrip().startswith("{") and path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise AdapterError(f"{path}: not valid JSON ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AdapterError(f"--model-config {text!r}: neither a JSON file nor valid JSON ({e})") from None


# Parameters every TorchAdapter has that the command sets through their own flags.
OWN_FLAGS = ("model_config", "trust_checkpoint", "precision", "allow_import")


def list_adapters(out=sys.stdout) -> None:
    from calib.adapters.base import AdapterError
    from calib.adapters.registry import load_class, specs

    found = specs()
    counts: dict[str, int] = {}
    for spec in found:
        counts[spec.name] = counts.get(spec.name, 0) + 1
    for spec in found:
        try:
            cls = load_class(spec)
        except AdapterError as e:
            print(f"{spec.name}  [unavailable]  from {spec.source}\n    {e}", file=out)
            continue
        dup = "  [name declared more than once]" if counts[spec.name] > 1 else ""
        print(f"{spec.name}  -> {cls.kind} table  from {spec.source}{dup}", file=out)
        if getattr(cls, "description", ""):
            print(f"    {cls.description}", file=out)
        if getattr(cls, "input_help", ""):
            print(f"    input: {cls.input_help}", file=out)
        archs = sorted(getattr(cls, "architectures", {}) or {})
        if archs:
            print(f"    architectures: {', '.join(archs)}", file=out)
        defaults = cls.all_defaults() if hasattr(cls, "all_defaults") else {}
        helps = cls.all_param_help() if hasattr(cls, "all_param_help") else {}
        for key, value in defaults.items():
            if key in OWN_FLAGS:
                continue
            print(f"    --param {key}={json.dumps(value)}" + (f"  {helps[key]}" if key in helps else ""), file=out)


def run(args) -> int:
    from calib.adapters.base import AdapterError
    from calib.io.errors import InputError
    from calib.tables import TableError

    if args.list:
        list_adapters()
        return 0
    missing = [flag for flag, value in (("NAME", args.name), ("--checkpoint", args.checkpoint),
                                        ("--input", args.input), ("--out", args.out)) if not value]
    if missing:
        print(f"calib adapt: error: missing {', '.join(missing)} (or use --list)", file=sys.stderr)
        return 2
    try:
        params = parse_params(args.param)
        config = parse_model_config(args.model_config)
        if config is not None:
            params["model_config"] = config
        if args.trust_checkpoint:
            params["trust_checkpoint"] = True
        if args.allow_import:
            params["allow_import"] = list(args.allow_import)
        if args.precision != "auto":
            params["precision"] = args.precision
        from calib.adapters.runner import adapt, write_result

        result = adapt(args.name, args.checkpoint, args.input, device=args.device, batch_size=args.batch_size,
                       params=params, progress=not args.quiet)
        path = write_result(result, args.out)
    except (AdapterError, InputError, TableError) as e:
        print(f"calib adapt: error: {e}", file=sys.stderr)
        return 2
    n_clips = result.table.get_column("clip").n_unique() if len(result.table) else 0
    print(f"wrote {path}: {result.kind}, {len(result.table)} rows, {n_clips} clips")
    return 0
