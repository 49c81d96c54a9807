"""Benchmark of the tie-order range (calib score's tie_order_range): what computing macro/micro
mAP under the three tie orders adds to a warm scoring run. Prints figures; asserts nothing.

    PYTHONPATH=$PWD python tests/benchmarks/bench_tie_order.py [--clips 12 --frames 400 --system grid]

Scores one synthetic system warm (GT maps cached), then times the aggregation of its records
(metrics_from_records) with and without the range, and each tie order's argsort over the micro
list (all records), the best of --repeat runs each.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--system", default="grid", help="synthetic system (grid: 2-decimal scores, full of ties)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    import numpy as np

    from calib.score import score
    from calib.score.aggregate import concat_records, metrics_from_records
    from calib.score.api import DEFAULT_THRESHOLDS, _fast_records, _plan
    from calib.score.argsort import TIE_ORDERS, tie_argsort
    from calib.score.matching import KIND_FN
    from fixtures.synth import generate

    tmp = Path(tempfile.mkdtemp(prefix="bench-ties-"))
    try:
        generate(tmp / "data", seed=0, clips=a.clips, frames=a.frames, systems=[a.system], n_jobs=2, progress=False)
        gt = tmp / "gt"
        gt.mkdir()
        for f in sorted((tmp / "data" / "gt").rglob("*.json")):
            (gt / f.name).symlink_to(f.resolve())
        pred = tmp / "data" / "systems" / a.system
        score(pred, gt)  # fills the GT cache
        t_score = best(lambda: score(pred, gt, with_matches=False), a.repeat)
        clips, psrc, gsrc = _plan(pred, gt, "dcase2026", None)[:3]
        rec = concat_records(_fast_records(clips, psrc, gsrc, None, {"jobs": 1, "backend": "loky", "scheduler": None},
                                           {}))
        thr = list(DEFAULT_THRESHOLDS)
        t_plain = best(lambda: metrics_from_records(rec, thr), a.repeat)
        t_range = best(lambda: metrics_from_records(rec, thr, with_tie_range=True), a.repeat)
        m = metrics_from_records(rec, thr, with_tie_range=True)
        keys = -rec["score"][rec["kind"] != KIND_FN]
        print(f"{a.clips} clips x {a.frames} frames, system {a.system}: {keys.size:,} detection records, "
              f"{keys.size - np.unique(keys).size:,} of them tied with an earlier one")
        print(f"warm score (with the range):          {t_score:7.3f} s")
        print(f"aggregation without the range:        {t_plain:7.3f} s")
        print(f"aggregation with the range:           {t_range:7.3f} s  (+{t_range - t_plain:.3f} s, "
              f"{(t_range - t_plain) / t_score:.0%} of the warm score)")
        for order in TIE_ORDERS:
            print(f"argsort of the micro list, {order:<7}     {best(lambda: tie_argsort(keys, order), a.repeat):7.3f} s")
        r = m["tie_order_range"]
        print(f"classes with mixed ties: {len(r['classes_with_mixed_ties'])}; macro_mAP "
              + ", ".join(f"{o} {v['macro_mAP']:.6f}" for o, v in r["by_order"].items()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
