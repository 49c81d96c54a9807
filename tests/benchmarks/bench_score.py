"""Benchmark of the scorer (dcase2026 protocol): fast engine vs the reference engine on the same
files, in one run, and a dev-test-sized warm re-score. Prints figures; asserts nothing.

    PYTHONPATH=$PWD python tests/benchmarks/bench_score.py speedup [--clips 6 --frames 200 --system grid]
    PYTHONPATH=$PWD python tests/benchmarks/bench_score.py devtest [--clips 78 --frames 1500]

speedup: reference (one process, nothing cached), fast cold with --jobs 2 (empty GT cache, a new
pool), and fast warm (GT maps cached on disk and in memory) on one synthetic system; each the best
of --repeat runs (noise only adds time); prints the ratios.
devtest: 3 simulated systems (sparse, grid, dense) on a dev-test-sized set; fills the GT cache
(each system once: GT is rendered on demand), then scores each system warm; prints the time per
system and the peak memory (RSS).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path


def flat_gt(data: Path, out: Path) -> Path:
    """The synthetic set keeps GT per split folder; the scorer reads one folder: link them flat."""
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted((data / "gt").rglob("*.json")):
        (out / f.name).symlink_to(f.resolve())
    return out


def timed(label: str, fn, repeat: int = 1, before=None):
    """Best of ``repeat`` runs of fn (``before`` runs untimed ahead of each): noise on a shared
    machine only ever adds time, so the minimum is the steadiest figure (timeit's advice)."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    dt = min(times)
    spread = f"  (runs {', '.join(f'{t:.2f}' for t in times)})" if repeat > 1 else ""
    print(f"{label:<38} {dt:8.2f} s   macro mAP {res['macro_mAP']:.6f}{spread}", flush=True)
    return dt, res


def _fresh_pool() -> None:
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def speedup(a, data: Path, tmp: Path) -> None:
    from calib.score import score
    from calib.score.cache import GT_CACHE

    gt = flat_gt(data, tmp / "gt")
    pred = data / "systems" / a.system
    cache = tmp / "cache"
    n = a.repeat
    ref_t, ref = timed("reference (1 process, no cache)", lambda: score(pred, gt, engine="reference"), n)

    def empty_cache():  # cold: no GT map on disk or in memory, and a pool still to start
        GT_CACHE.clear()
        shutil.rmtree(cache, ignore_errors=True)
        _fresh_pool()

    cold_t, cold = timed("fast, cold, --jobs 2", lambda: score(pred, gt, jobs=2, cache_dir=cache), n, empty_cache)
    # warm from the disk cache, as a new `calib score --cache` process would be
    warm_t, warm = timed("fast, warm (disk cache), --jobs 1", lambda: score(pred, gt, cache_dir=cache), n,
                         GT_CACHE.clear)
    mem_t, _ = timed("fast, warm (memory cache), --jobs 1", lambda: score(pred, gt, cache_dir=cache), n)
    # in one process the pool started by the cold run is reused (API users scoring repeatedly)
    par_t, _ = timed("fast, warm (memory cache), --jobs 2", lambda: score(pred, gt, jobs=2, cache_dir=cache), n)
    same = all(ref[k] == cold[k] == warm[k] for k in ("macro_mAP", "micro_mAP", "macro_pearson_r"))
    print(f"\ncold --jobs 2 speed-up: {ref_t / cold_t:.1f}x   (target >= 1.7x)")
    print(f"warm speed-up:          {ref_t / warm_t:.1f}x (disk), {ref_t / mem_t:.1f}x (memory), "
          f"{ref_t / par_t:.1f}x (memory, --jobs 2, pool reused)   (target >= 30x)")
    print(f"identical metrics across engines: {same}")
    if n > 1:
        print(f"(best of {n} runs each; --repeat 1 for single runs)")


def devtest(a, data: Path, tmp: Path) -> None:
    from calib.score import score

    gt = flat_gt(data, tmp / "gt")
    cache = tmp / "cache"
    systems = ["sparse", "grid", "dense"]
    fill = 0.0
    for s in systems:  # GT rows are rendered on demand: each system adds the rows its buckets need
        dt, _ = timed(f"fill the GT cache: {s} (--jobs 2)", lambda: score(data / "systems" / s, gt, jobs=2, cache_dir=cache))
        fill += dt
    print(f"GT cache filled in {fill:.1f} s", flush=True)
    total = 0.0
    for s in systems:
        dt, _ = timed(f"warm: {s} (--jobs {a.jobs})", lambda: score(data / "systems" / s, gt, jobs=a.jobs, cache_dir=cache))
        total += dt
    _fresh_pool()  # reaped workers count in RUSAGE_CHILDREN
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"\nwarm total for {len(systems)} systems: {total:.1f} s (target < 300 s); "
          f"peak RSS {peak:.2f} GiB (main), {kids:.2f} GiB (largest worker)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["speedup", "devtest"])
    ap.add_argument("--clips", type=int)
    ap.add_argument("--frames", type=int)
    ap.add_argument("--system", default="grid", help="speedup: the synthetic system to score (default grid)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="speedup: runs of each measurement, the best kept (default 3)")
    ap.add_argument("--data", help="an existing 'calib synth' folder (default: generate one in a temp folder)")
    a = ap.parse_args()
    clips = a.clips or (6 if a.mode == "speedup" else 78)
    frames = a.frames or (200 if a.mode == "speedup" else 1500)
    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    try:
        data = Path(a.data) if a.data else tmp / "data"
        if not a.data:
            from fixtures.synth import generate

            t0 = time.perf_counter()
            systems = [a.system] if a.mode == "speedup" else ["sparse", "grid", "dense"]
            generate(data, seed=a.seed, clips=clips, frames=frames, systems=systems, n_jobs=2, progress=True)
            print(f"synthetic data: {clips} clips x {frames} frames in {time.perf_counter() - t0:.1f} s", flush=True)
        (speedup if a.mode == "speedup" else devtest)(a, data, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
