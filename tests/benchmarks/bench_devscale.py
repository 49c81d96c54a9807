"""Dev-test-sized benchmark: ``calib run decision-calibrated`` and a 4-variant ``calib portfolio``
on a synthetic set of the real dev test's size (78 clips x 1,500 frames, the lowthr system), each
as a user runs it (a fresh ``calib`` process, nothing cached). Prints the time of every phase (each
line the command logs closes one: synth, ingest, each stage, scoring, writing), the stage times
from run.json, the wall time of each command, its CPU seconds (how many of the cores it kept busy, per
phase too) and its peak resident memory (the largest sum over the command's process tree: the calib
process and its pool workers, sampled with psutil; the largest single process without it). The
portfolio shares the run's cache (``--cache``), as the README advises, so the GT maps the run
rendered are not rendered again (``--cold-portfolio``: its own cache, everything rendered again).
Targets on 2 cores: run < 10 min, portfolio < 45 min, peak < 8 GiB. Asserts nothing.

    PYTHONPATH=$PWD python tests/benchmarks/bench_devscale.py [--clips 78 --frames 1500] [--jobs 1]
        [--skip-portfolio] [--cold-portfolio] [--keep DIR] [--data EXISTING_SYNTH_DIR]

Scale it down (--clips 8 --frames 1500) on a busy machine; the cost grows about linearly with
clips x frames (the detections, and so the points to render, grow with them).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_portfolio import GRID  # the 4-variant portfolio (this script's folder is on sys.path)

#: run in a wrapper process: the command's output line by line with the seconds since its start and
#: the CPU seconds its process tree (the calib process and its pool workers) had used by then, then
#: the peak memory (KiB): the largest sum of the tree's resident sets, sampled every 0.2 s with
#: psutil when it is installed (the dask extra brings it), else the largest single process
#: (ru_maxrss), and the tree's CPU seconds in all (getrusage of the waited-for processes)
WRAPPER = r"""
import resource, subprocess, sys, threading, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True, bufsize=1)
peak, cpu = [0], [0.0]
try:
    import psutil
except ImportError:
    psutil = None
def sample():
    root = psutil.Process(p.pid)
    while p.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak[0] = max(peak[0], sum(q.memory_info().rss for q in procs) // 1024)
            t = [q.cpu_times() for q in procs]
            cpu[0] = max(cpu[0], sum(c.user + c.system + c.children_user + c.children_system for c in t))
        except psutil.Error:
            pass
        time.sleep(0.2)
if psutil is not None:
    threading.Thread(target=sample, daemon=True).start()
for line in p.stdout:
    print(f"{time.perf_counter() - t0:10.2f} {cpu[0]:10.2f} {line.rstrip()}", flush=True)
rc = p.wait()
use = resource.getrusage(resource.RUSAGE_CHILDREN)
kib = max(peak[0], use.ru_maxrss)
print(f"@@ {rc} {time.perf_counter() - t0:.3f} {kib} {use.ru_utime + use.ru_stime:.1f}", flush=True)
"""


def calib(title: str, *args: str) -> tuple[float, float]:
    """Run ``calib ARGS`` in a wrapper; print its phases (each logged line with the seconds since the
    previous one, and how many cores its process tree kept busy meanwhile, when psutil can tell);
    return (wall seconds, peak RSS GiB)."""
    print(f"\n== {title}: calib {' '.join(args)}", flush=True)
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, sys.executable, "-m", "calib", *args],
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    prev, prev_cpu, wall, peak, cpu, rc = 0.0, 0.0, 0.0, 0.0, 0.0, 0
    for line in proc.stdout:
        if line.startswith("@@ "):
            _, code, secs, kib, used = line.split()
            rc, wall, peak, cpu = int(code), float(secs), int(kib) / 2**20, float(used)
            continue
        t, c, *rest = line.split(None, 2)
        t, c, text = float(t), float(c), rest[0] if rest else ""
        busy = f"{(c - prev_cpu) / (t - prev):4.1f} cores" if c > prev_cpu and t > prev else " " * 10
        print(f"  {t - prev:8.2f} s {busy}  {text.strip()[:140]}", flush=True)
        prev, prev_cpu = t, max(prev_cpu, c)
    proc.wait()
    if rc:
        raise SystemExit(f"calib {args[0]} failed (exit {rc})")
    print(f"  {title}: {wall:.1f} s wall ({wall / 60:.2f} min), {cpu:.0f} CPU-seconds ({cpu / wall:.2f} cores busy "
          f"on average), peak RSS {peak:.2f} GiB", flush=True)
    return wall, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=78)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--eval-clips", type=int, default=0, help="evaluation clips (no GT) besides the dev clips")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="--jobs of calib run and calib portfolio (default 1)")
    ap.add_argument("--skip-portfolio", action="store_true")
    ap.add_argument("--cold-portfolio", action="store_true", help="the portfolio in its own cache (default: the run's)")
    ap.add_argument("--data", help="an existing 'calib synth' folder with the lowthr system")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    a = ap.parse_args()

    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench-devscale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    figures = {}
    try:
        data = Path(a.data) if a.data else tmp / "data"
        if not a.data:
            figures["synth"] = calib("synth", "synth", str(data), "--clips", str(a.clips), "--frames", str(a.frames),
                                     "--eval-clips", str(a.eval_clips), "--systems", "lowthr", "--seed", str(a.seed),
                                     "--jobs", "2", "--overwrite")
        size = sum(f.stat().st_size for f in (data / "systems" / "lowthr").glob("*.json"))
        print(f"\nlowthr predictions: {size / 2**20:.0f} MiB of JSON for {a.clips} dev clips x {a.frames} frames")
        jobs = ["--jobs", str(a.jobs)] if a.jobs != 1 else []
        run_out = tmp / "run"
        shutil.rmtree(run_out, ignore_errors=True)
        figures["run"] = calib("calib run decision-calibrated", "run", "decision-calibrated", "--data", str(data),
                               "--out", str(run_out), *jobs)
        stages = json.loads((run_out / "run.json").read_text()).get("stages", [])
        for s in stages:
            print(f"  stage {s.get('address', '?'):<12} {s.get('type', ''):<10} {s.get('seconds', 0):8.2f} s  "
                  f"{s.get('rows', '')} detections")
        if not a.skip_portfolio:
            (tmp / "grid.toml").write_text(GRID)
            pf = tmp / "portfolio"
            shutil.rmtree(pf, ignore_errors=True)
            shared = [] if a.cold_portfolio else ["--cache", str(run_out / ".cache")]
            figures["portfolio"] = calib("calib portfolio (4 variants, 3 folds + site)", "portfolio",
                                         str(tmp / "grid.toml"), "--data", str(data), "--out", str(pf), *jobs, *shared)
        print(f"\nsummary ({a.clips} clips x {a.frames} frames, lowthr, --jobs {a.jobs}):")
        targets = {"run": 600, "portfolio": 2700}
        for name, (wall, peak) in figures.items():
            target = f" (target < {targets[name] / 60:.0f} min)" if name in targets else ""
            print(f"  {name:<10} {wall:9.1f} s = {wall / 60:6.2f} min{target}, peak RSS {peak:5.2f} GiB (target < 8)")
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
