"""Benchmark of ``calib portfolio`` against one reference scoring, measured in the same run.

A synthetic set (default 4 dev clips x 300 frames, the lowthr system), a 4-variant grid over the
shipped ``decision-calibrated`` recipe (rerank on/off x one or three per class; 3 folds + site), run
as a user runs it (``calib portfolio`` in a fresh process, nothing cached), and, on the same clips,
``calib score --engine reference --jobs 1`` of the raw system (a fresh process too). Prints both
times and their ratio (the target is at most 1.0). Asserts nothing.

    PYTHONPATH=$PWD python tests/benchmarks/bench_portfolio.py [--clips 4 --frames 300] [--jobs 1]
        [--profile portfolio.prof] [--data EXISTING_SYNTH_DIR] [--keep DIR]

--gt-cached: also run the portfolio with the GT maps already in its cache (as after a ``calib run``
sharing ``--cache``), rendered untimed beforehand: what the portfolio itself adds.
--profile FILE: run the portfolio under cProfile (writes FILE; prints the top functions by
cumulative time); the ratio then includes the profiler's overhead.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = """base = "decision-calibrated"
folds = 3
[site]
fit = "sony"
score = "tau"
[axes]
"stages.rerank.enabled" = [true, false]
"stages.cap.per_class" = [1, 3]
"""


#: renders every GT map of a GT folder into a score cache folder (the untimed step of --gt-cached)
PREPARE_GT = """
import sys
from calib.io.dcase import ingest_truth
from calib.score.api import prepare_gt
from calib.score.cache import cache_folder
with cache_folder(sys.argv[2]):
    prepare_gt(ingest_truth(sys.argv[1], progress=False)[0])
"""


def calib(*args: str, profile: str | None = None) -> float:
    """Seconds of one ``calib`` command in a fresh interpreter (imports included, as a user sees)."""
    cmd = [sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", profile]
    cmd += ["-m", "calib", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def flat_gt(data: Path, out: Path) -> Path:
    """The synthetic set keeps GT per split folder; link the dev clips' files into one folder."""
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted((data / "gt").rglob("*.json")):
        link = out / f.name
        link.unlink(missing_ok=True)  # a kept folder run again
        link.symlink_to(f.resolve())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="calib portfolio --jobs (default 1)")
    ap.add_argument("--data", help="an existing 'calib synth' folder with the lowthr system")
    ap.add_argument("--profile", metavar="FILE", help="profile the portfolio run with cProfile")
    ap.add_argument("--gt-cached", action="store_true", help="also time a portfolio whose GT maps are cached")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    a = ap.parse_args()

    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench-portfolio-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        data = Path(a.data) if a.data else tmp / "data"
        if not a.data:
            t = calib("synth", str(data), "--clips", str(a.clips), "--frames", str(a.frames), "--seed", str(a.seed),
                      "--systems", "lowthr", "--eval-clips", "0", "--quiet", "--overwrite")
            print(f"synthetic data: {a.clips} clips x {a.frames} frames (lowthr) in {t:.1f} s", flush=True)
        gt = flat_gt(data, tmp / "gt-flat")
        (tmp / "grid.toml").write_text(GRID)
        ref = calib("score", str(data / "systems" / "lowthr"), str(gt), "--engine", "reference", "--jobs", "1")
        print(f"calib score --engine reference --jobs 1 (raw lowthr): {ref:7.2f} s", flush=True)
        out = tmp / "portfolio"
        shutil.rmtree(out, ignore_errors=True)
        port = calib("portfolio", str(tmp / "grid.toml"), "--data", str(data), "--out", str(out),
                     "--jobs", str(a.jobs), "--quiet", profile=a.profile)
        print(f"calib portfolio (4 variants, 3 folds + site, --jobs {a.jobs}):  {port:7.2f} s", flush=True)
        print(f"portfolio / reference scoring: {port / ref:.2f}  (target <= 1.0)")
        if a.gt_cached:
            out = tmp / "portfolio-gt-cached"
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run([sys.executable, "-c", PREPARE_GT, str(data / "gt"), str(out / ".cache" / "score")],
                           check=True)
            warm = calib("portfolio", str(tmp / "grid.toml"), "--data", str(data), "--out", str(out),
                         "--jobs", str(a.jobs), "--quiet")
            print(f"calib portfolio, GT maps cached beforehand:      {warm:7.2f} s")
            print(f"portfolio (GT cached) / reference scoring: {warm / ref:.2f}")
        if a.profile:
            import pstats

            pstats.Stats(a.profile).sort_stats("cumulative").print_stats(40)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
