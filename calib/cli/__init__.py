"""calib's command line: one module per command (see main.py), and here the options every heavy
command shares: --jobs, --backend, --scheduler (and --quiet for the progress bars), and the
:func:`calib.score.parallel.scale_out` block they set."""
from __future__ import annotations


def add_scale_args(p, what: str, quiet: bool = True) -> None:
    """--jobs N, --backend {loky,threading,dask}, --scheduler ADDRESS (and --quiet unless the
    command has its own) on parser ``p``; ``what``: the work that runs in parallel."""
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help=f"{what} in parallel over N worker processes (default 1; -1: one per core). No pool is "
                   "started when the work is too small to gain from it; the results are the same whatever N")
    p.add_argument("--backend", choices=["loky", "threading", "dask"], default="loky",
                   help="joblib backend for --jobs; dask runs the work on a Dask cluster (needs calib[dask])")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (with --backend dask; default a local "
                   "in-process cluster). Its workers need calib installed and the same paths to the data and cache")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bars")


def scale_from(args):
    """The :func:`calib.score.parallel.scale_out` block of the parsed options (checked: an unknown
    backend, or dask without Dask installed, fails here, before any work)."""
    from calib.score.parallel import scale_out

    if args.scheduler and args.backend != "dask":
        raise SystemExit(f"calib {args.command}: --scheduler needs --backend dask")
    if args.jobs == 0 or args.jobs < -1:
        raise SystemExit(f"calib {args.command}: --jobs must be a positive whole number or -1, got {args.jobs}")
    return scale_out(args.jobs, args.backend, args.scheduler, quiet=bool(getattr(args, "quiet", False)))
