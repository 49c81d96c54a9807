"""Benchmark of the synthetic data generator: prints wall time and disk size.

Default: a dev-test-sized set (78 clips x 1500 frames, 1.5 events per frame, 3 systems) on 2
workers. Run from the repository root:

    PYTHONPATH=$PWD python tests/benchmarks/bench_synth.py [--blob-scale 0.5] [--keep OUT]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=78)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--density", type=float, default=1.5)
    ap.add_argument("--systems", default="lowthr,dense,sparse")
    ap.add_argument("--blob-scale", type=float, default=1.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="write here and keep the set (default: a temp folder, removed)")
    a = ap.parse_args()

    from fixtures.synth import generate

    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench-synth-")) / "set"
    t0 = time.perf_counter()
    m = generate(work, seed=a.seed, clips=a.clips, frames=a.frames, systems=a.systems.split(","),
                 events_per_frame=a.density, blob_scale=a.blob_scale, n_jobs=a.jobs, progress=True,
                 overwrite=bool(a.keep))
    wall = time.perf_counter() - t0
    st = m["stats"]
    print(f"clips={a.clips} frames={a.frames} density={a.density} blob_scale={a.blob_scale} "
          f"systems={a.systems} jobs={a.jobs}")
    print(f"wall time            {wall:8.1f} s  ({wall / a.clips:.2f} s per clip)")
    print(f"GT annotations       {st['gt_annotations']:8d}  ({st['events_per_frame']} per frame)")
    total = folder_bytes(work)
    print(f"total on disk        {total / 1e6:8.1f} MB")
    for sub in ("gt", "systems", "labels", "teacher"):
        print(f"  {sub:18s} {folder_bytes(work / sub) / 1e6:8.1f} MB")
    for name, s in m["systems"].items():
        print(f"  systems/{name:10s} {s['bytes'] / 1e6:8.1f} MB  {s['n_det']:8d} detections  "
              f"largest file {s['max_file_bytes'] / 2**20:.2f} MiB  over 20 MiB: {len(s['oversize_files'])}")
    if not a.keep:
        shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
