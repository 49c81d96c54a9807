"""Benchmark of the dcase2026-coco energy renderer on the golden sets: the batch renderer
(render_energies, used by the fast engine) against the one-triplet-at-a-time reference, on the
same annotations, in one run. Prints figures (and whether the maps are bit-identical); asserts
nothing. Times are this process's CPU time (time.process_time), steadier than wall time on a
machine shared with other jobs.

    PYTHONPATH=$PWD python tests/benchmarks/bench_coco_render.py [--golden DIR] [--ref-triplets 20000]

--golden: a golden folder (default ../shared/golden, else tests/data/golden.tar.xz unpacked to a
temp folder). The reference is timed on the first annotations of each set up to --ref-triplets
triplets (it takes ~25 us a triplet); the batch renderer on all of them and on that subset.
"""
from __future__ import annotations

import argparse
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def golden_dir(arg: str | None, tmp: Path) -> Path:
    if arg:
        return Path(arg)
    shared = ROOT.parent / "shared" / "golden"
    if shared.is_dir():
        return shared
    with tarfile.open(ROOT / "tests" / "data" / "golden.tar.xz", mode="r:xz") as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "golden"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--golden")
    ap.add_argument("--ref-triplets", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=2, help="runs of the batch renderer, the best kept")
    a = ap.parse_args()
    import numpy as np

    from calib.score.annotations import load_file
    from calib.score.coco_render import render_energies, render_energy_reference

    tmp = Path(tempfile.mkdtemp(prefix="bench-coco-"))
    try:
        g = golden_dir(a.golden, tmp)
        sets = {"gt (dense GT polygons)": sorted((g / "gt").glob("*.json")),
                "dense predictions": sorted((g / "dense").glob("*.json")),
                "sparse predictions": sorted((g / "sparse").glob("*.json")),
                "coco-polar gt + pred": sorted((g / "coco-polar" / "gt").glob("*.json"))
                + sorted((g / "coco-polar" / "pred").glob("*.json"))}
        print(f"{'set':<24} {'anns':>6} {'triplets':>9} {'batch us/trip':>14} {'ref us/trip':>12} {'ratio':>6} {'identical':>9}")
        for name, files in sets.items():
            polys = [ann.polygons for f in files for ann in load_file(f, "gt" if f.stem.endswith("_std") else "pred",
                                                                     "dcase2026-coco")]
            counts = [sum(len(p) for p in ps) for ps in polys]
            n = sum(counts)
            times = []
            for _ in range(a.repeat):
                t0 = time.process_time()
                for _m in render_energies(polys):
                    pass
                times.append(time.process_time() - t0)
            fast = min(times) / n * 1e6
            k = int(np.searchsorted(np.cumsum(counts), a.ref_triplets)) + 1
            sub, m = polys[:k], sum(counts[:k])
            t0 = time.process_time()
            ref_maps = [render_energy_reference(p) for p in sub]
            ref = (time.process_time() - t0) / m * 1e6
            sub_times = []
            for _ in range(a.repeat):
                t0 = time.process_time()
                fast_maps = list(render_energies(sub))
                sub_times.append(time.process_time() - t0)
            fast_sub = min(sub_times) / m * 1e6
            same = all(np.array_equal(x.view(np.uint32), y.view(np.uint32)) for x, y in zip(fast_maps, ref_maps))
            print(f"{name:<24} {len(polys):>6} {n:>9} {fast:>14.1f} {ref:>12.1f} {ref / fast_sub:>5.1f}x {str(same):>9}",
                  flush=True)
        print(f"(ratio: reference / batch on the same first {a.ref_triplets:,} triplets of each set)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
