"""Ingest speed and memory: a ~100 MB dense prediction file into Parquet vs a bare json.load.

Target (issue 2): ingest time <= 1.5x json.load time, peak memory <= 4x the file size.
Each measurement runs in its own fresh process (peak RSS above the process's baseline after imports),
so the two numbers are comparable within one run.

    python tests/benchmarks/bench_ingest.py [--mb 100]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time, gc
mode, path, out = sys.argv[1:4]
import polars, pyarrow, orjson  # imports are not part of the measurement
from calib.io.dcase import ingest_predictions
from calib.tables import write_table
gc.collect()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if mode == "json":
    with open(path) as f:
        doc = json.load(f)
else:
    df, sources = ingest_predictions([path], "bench", progress=False)
    write_table(df, out, "detections", sources=sources)
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "peak_kb": peak, "base_kb": base}))
"""


def make_dense_file(path: Path, target_mb: float, seed: int = 0) -> None:
    """Dense blobs (every integer pixel of a Gaussian above 10% of its peak), 6-decimal numbers."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-30:31, -30:31]
    parts, size, frame = [], 0, 0
    with open(path, "w") as f:
        f.write('{"annotations": [')
        first = True
        while size < target_mb * 1e6:
            for _ in range(4):
                sigma = rng.uniform(6, 11)
                cx, cy = rng.uniform(40, 320), rng.uniform(40, 140)
                e = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
                keep = e >= 0.1
                pts = np.column_stack([(cx + xx[keep]).round(4), (cy + yy[keep]).round(4), e[keep].round(6)])
                ann = {"metadata_frame_index": frame, "category_id": int(rng.integers(13)), "score": round(float(rng.random()), 6),
                       "segmentation": [pts.tolist()], "distance": 150.0}
                s = ("" if first else ", ") + json.dumps(ann)
                first = False
                f.write(s)
                size += len(s)
            frame += 1
        f.write("]}")


def measure(mode: str, path: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), str(out)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=100.0, help="size of the generated prediction file (MB)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs for each side")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bigclip.json"
        make_dense_file(path, args.mb)
        size = path.stat().st_size
        print(f"file: {size / 1e6:.1f} MB")
        rows = {}
        for mode in ("json", "ingest"):
            runs = [measure(mode, path, Path(tmp) / "t.parquet") for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            extra_mb = max(r["peak_kb"] - r["base_kb"] for r in runs) / 1024
            rows[mode] = (best["seconds"], extra_mb)
            print(f"{mode:>7}: {best['seconds']:.2f} s (best of {args.repeat}), peak memory above baseline {extra_mb:.0f} MiB "
                  f"= {extra_mb * 2**20 / size:.2f}x the file")
        ratio = rows["ingest"][0] / rows["json"][0]
        mem_ratio = rows["ingest"][1] * 2**20 / size
        print(f"time ratio ingest/json.load: {ratio:.2f} (target <= 1.5): {'PASS' if ratio <= 1.5 else 'FAIL'}")
        print(f"ingest peak memory / file size: {mem_ratio:.2f} (target <= 4): {'PASS' if mem_ratio <= 4 else 'FAIL'}")


if __name__ == "__main__":
    main()
