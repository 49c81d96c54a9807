"""Benchmark of ``calib run``: a shipped recipe on synthetic data, cold (nothing cached), warm
(everything cached) and after changing the emitter's parameter (only the last stage re-runs).
Prints wall times and which stages were cached. Run from the repository root:

    PYTHONPATH=$PWD python tests/benchmarks/bench_recipe.py [--recipe dense-16band] [--clips 8 --frames 300]
        [--set emit.step=3] [--data EXISTING_SYNTH_DIR] [--no-score]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="dense-16band")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="change", default="emit.step=3", help="the late change for the third run")
    ap.add_argument("--data", help="an existing 'calib synth' folder (default: generate one in a temp folder)")
    ap.add_argument("--no-score", action="store_true")
    a = ap.parse_args()

    from calib.recipe import Recipe, load_recipe, run_recipe
    from calib.recipe.address import parse_assignment, set_values

    tmp = Path(tempfile.mkdtemp(prefix="bench-recipe-"))
    try:
        data = Path(a.data) if a.data else tmp / "data"
        if not a.data:
            from fixtures.synth import generate

            t0 = time.perf_counter()
            generate(data, seed=a.seed, clips=a.clips, frames=a.frames, n_jobs=2)
            print(f"synthetic data: {a.clips} clips x {a.frames} frames in {time.perf_counter() - t0:.1f} s")
        recipe = load_recipe(a.recipe)
        changed = Recipe.from_dict(set_values(recipe.to_dict(), dict([parse_assignment(a.change)])))
        for label, r in (("cold", recipe), ("warm", recipe), (f"after {a.change}", changed)):
            t0 = time.perf_counter()
            res = run_recipe(r, tmp / "run", base_dir=data, log=lambda s: None, score=not a.no_score)
            wall = time.perf_counter() - t0
            cached = [x.address for x in res.chain.records if x.cached]
            stage_s = sum(x.seconds for x in res.chain.records if not x.cached)
            print(f"{label:>20}: {wall:6.2f} s wall, stages {stage_s:6.2f} s, cached {len(cached)}/{len(res.chain.records)}"
                  f" ({', '.join(cached) or '-'})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
