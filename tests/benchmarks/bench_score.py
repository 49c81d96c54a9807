"""Benchmark of the scorer (dcase2026 protocol): fast engine vs the reference engine on the same
files, in one run, and a dev-test-sized warm re-score. Prints figures; asserts nothing.

    PYTHONPATH=$PWD python tests/benchmarks/bench_score.py speedup [--clips 6 --frames 200 --system grid]
    PYTHONPATH=$PWD python tests/benchmarks/bench_score.py devtest [--clips 78 --frames 1500]
    PYTHONPATH=$PWD python tests/benchmarks/bench_score.py variants [--clips 4 --frames 300 --system lowthr]
    PYTHONPATH=$PWD python tests/benchmarks/bench_score.py pool [--clips 4 --frames 300 --system lowthr]

speedup: reference (one process, nothing cached), fast cold with --jobs 2 (empty GT cache, a new
pool), and fast warm (GT maps cached on disk and in memory) on one synthetic system; each the best
of --repeat runs (noise only adds time); prints the ratios.
devtest: 3 simulated systems (sparse, grid, dense) on a dev-test-sized set; fills the GT cache
(each system once: GT is rendered on demand), then scores each system warm; prints the time per
system and the peak memory (RSS).
variants: what a portfolio does to one system: score it (tables, as calib run does), then K
subsets and re-scorings (thresholds, caps per frame and class and per frame, a random half, random
new scores), each "cold" (GT maps cached, prediction rows not: what every variant cost before the
rows were cached) and "cached" (its rows reused, as a portfolio finds them from the system's
first scoring); prints each one's seconds, the
ratio to a reference-engine scoring of the raw system measured in the same run (extrapolated from
--reference-clips clips when fewer than all), the maps rendered and whether cold and cached gave
identical metrics; then the per-detection costs the pool decision's estimate uses.
pool: a warm re-score of the raw system with --jobs 1 and --jobs 2 (no pool: under
calib.score.parallel.POOL_MIN_SECONDS) and --jobs 2 with a pool forced (threshold 0, a fresh loky pool),
cold and warm: what starting a pool costs against what it saves.
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


def load_tables(data: Path, system: str):
    from calib.io.dcase import ingest_predictions, ingest_truth

    det, _ = ingest_predictions([data / "systems" / system], progress=False)
    truth, _ = ingest_truth(data / "gt", progress=False)
    return det, truth


def system_variants(det, seed: int = 0):
    """(name, table) of the subsets and re-scorings a portfolio's stages make of one system's table,
    one at a time (a dev-test-sized table is about 1 GB: holding all eight ran a shared 23 GB
    machine out of memory)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    for t in (0.1, 0.2, 0.3):
        yield f"threshold {t}", det.filter(pl.col("score") >= t)
    by_score = det.sort(["clip", "score"], descending=[False, True])
    yield "cap 1 per frame and class", by_score.group_by(["clip", "frame", "class_id"], maintain_order=True).head(1)
    yield "cap 6 per frame", by_score.group_by(["clip", "frame"], maintain_order=True).head(6)
    del by_score
    yield "random half", det.filter(pl.Series(rng.random(det.height) < 0.5))
    for i in range(2):
        yield f"rescored {i + 1}", det.with_columns(pl.Series("score", rng.random(det.height)))


def variants(a, data: Path, tmp: Path) -> None:
    import polars as pl

    from calib.score import score_tables
    from calib.score.cache import GT_CACHE
    from calib.score.pred_cache import PRED_KIND

    det, truth = load_tables(data, a.system)
    clips = sorted(truth.get_column("clip").unique().to_list())
    n_ref = min(a.reference_clips or len(clips), len(clips))
    some = clips[:n_ref]
    t0 = time.perf_counter()
    ref = score_tables(det.filter(pl.col("clip").is_in(some)), truth.filter(pl.col("clip").is_in(some)),
                       engine="reference")
    ref_t = (time.perf_counter() - t0) * len(clips) / n_ref
    how = "" if n_ref == len(clips) else f" (extrapolated from {n_ref} of {len(clips)} clips)"
    print(f"{det.height} detections of {a.system}, {len(clips)} clips; reference engine, raw system: "
          f"{ref_t:.2f} s{how}, macro mAP of those clips {ref['macro_mAP']:.6f}", flush=True)
    GT_CACHE.clear()
    t0 = time.perf_counter()
    raw = score_tables(det, truth)
    raw_t = time.perf_counter() - t0
    print(f"fast engine, raw system, nothing cached: {raw_t:.2f} s ({raw.work['maps_rendered']} maps rendered)")
    t0 = time.perf_counter()
    again = score_tables(det, truth)
    print(f"fast engine, raw system again (all cached): {time.perf_counter() - t0:.2f} s "
          f"(same metrics: {again['macro_mAP'] == raw['macro_mAP']})\n", flush=True)
    print(f"{'variant':<28}{'dets':>9}{'cold s':>9}{'cached s':>10}{'cold/ref':>10}{'cached/ref':>11}"
          f"{'speed-up':>10}{'rendered':>10}  same")
    tot_cold = tot_cached = 0.0
    light, render = [], []
    for name, v in system_variants(det, a.seed):
        GT_CACHE.clear(PRED_KIND)  # GT maps stay: "cold" is the fast engine as it was before rows were cached
        t0 = time.perf_counter()
        cold = score_tables(v, truth)
        cold_t = time.perf_counter() - t0
        t0 = time.perf_counter()
        cached = score_tables(v, truth)
        cached_t = time.perf_counter() - t0
        same = all(cold[k] == cached[k] for k in ("macro_mAP", "micro_mAP", "macro_pearson_r", "micro_AP_per_thr")) \
            and cold.matches.equals(cached.matches)
        tot_cold += cold_t
        tot_cached += cached_t
        light.append(cached_t / max(v.height, 1))
        render.append((cold_t - cached_t) / max(cold.work["maps_rendered"], 1))
        print(f"{name:<28}{v.height:>9}{cold_t:>9.2f}{cached_t:>10.3f}{cold_t / ref_t:>10.3f}{cached_t / ref_t:>11.4f}"
              f"{cold_t / cached_t:>9.1f}x{cached.work['maps_rendered']:>10}  {same}", flush=True)
    k = len(light)
    print(f"\n{k} variants: cold {tot_cold:.2f} s, cached {tot_cached:.2f} s ({tot_cold / tot_cached:.1f}x); "
          f"per variant cached / reference of the raw system: {tot_cached / k / ref_t:.4f}")
    print(f"cost model: {sorted(light)[k // 2] * 1e6:.1f} us per detection looked up and recorded, "
          f"{sorted(render)[k // 2] * 1e3:.2f} ms per prediction map rendered and compared (medians)")


def pool(a, data: Path, tmp: Path) -> None:
    from calib.score import parallel, score_tables
    from calib.score.cache import GT_CACHE

    det, truth = load_tables(data, a.system)
    GT_CACHE.clear()
    score_tables(det, truth)  # fills the caches
    for label, jobs, threshold in (("--jobs 1", 1, None), ("--jobs 2 (decided)", 2, None),
                                   ("--jobs 2, pool forced, new pool", 2, 0.0), ("--jobs 2, pool forced, reused", 2, 0.0)):
        if threshold is not None:
            parallel.POOL_MIN_SECONDS, saved = threshold, parallel.POOL_MIN_SECONDS
        if "new pool" in label:
            _fresh_pool()
        t0 = time.perf_counter()
        res = score_tables(det, truth, jobs=jobs)
        dt = time.perf_counter() - t0
        if threshold is not None:
            parallel.POOL_MIN_SECONDS = saved
        print(f"warm, {label:<34} {dt:7.2f} s  pool {res.work['pool']}, estimate {res.work['estimated_seconds']}")
    GT_CACHE.clear()
    parallel.POOL_MIN_SECONDS, saved = 0.0, parallel.POOL_MIN_SECONDS
    _fresh_pool()
    t0 = time.perf_counter()
    res = score_tables(det, truth, jobs=2)
    print(f"cold, --jobs 2, pool forced, new pool    {time.perf_counter() - t0:7.2f} s  estimate "
          f"{res.work['estimated_seconds']}")
    parallel.POOL_MIN_SECONDS = saved
    GT_CACHE.clear()
    t0 = time.perf_counter()
    res = score_tables(det, truth)
    print(f"cold, --jobs 1                           {time.perf_counter() - t0:7.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["speedup", "devtest", "variants", "pool"])
    ap.add_argument("--clips", type=int)
    ap.add_argument("--frames", type=int)
    ap.add_argument("--system", help="speedup, variants, pool: the synthetic system to score (default grid for "
                    "speedup, lowthr otherwise)")
    ap.add_argument("--reference-clips", type=int, help="variants: time the reference engine on this many clips "
                    "and extrapolate (default all; the reference takes about 5 s per 1000 frames of lowthr)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="speedup: runs of each measurement, the best kept (default 3)")
    ap.add_argument("--data", help="an existing 'calib synth' folder (default: generate one in a temp folder)")
    a = ap.parse_args()
    small = a.mode in ("variants", "pool")
    clips = a.clips or (6 if a.mode == "speedup" else 4 if small else 78)
    frames = a.frames or (200 if a.mode == "speedup" else 300 if small else 1500)
    a.system = a.system or ("grid" if a.mode == "speedup" else "lowthr")
    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    try:
        data = Path(a.data) if a.data else tmp / "data"
        if not a.data:
            from fixtures.synth import generate

            t0 = time.perf_counter()
            systems = [a.system] if a.mode != "devtest" else ["sparse", "grid", "dense"]
            generate(data, seed=a.seed, clips=clips, frames=frames, systems=systems, n_jobs=2, progress=True)
            print(f"synthetic data: {clips} clips x {frames} frames in {time.perf_counter() - t0:.1f} s", flush=True)
        {"speedup": speedup, "devtest": devtest, "variants": variants, "pool": pool}[a.mode](a, data, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
