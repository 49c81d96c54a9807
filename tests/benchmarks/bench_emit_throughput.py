"""Emission, feature and selection throughput: the batch canvas kit against the per-detection path
it replaced, measured in one run.

The old path is the code base at ``--baseline`` (a git revision, default the commit before the
canvas kit), exported with ``git archive`` into a temporary folder and run in a subprocess on the
same table; nothing of it is kept in the package. For each synthetic system (``lowthr``: 3-degree
lattice blobs; ``sparse``: 6-20 scattered peaks) the benchmark builds a table of ``--detections``
detections and prints, per emitter (grid, dense, rowmajor, compress, hull, gaussian):

- CPU time per detection of the old path (on the first ``--old-sample`` detections: it is slow) and
  of the new one (on all of them), and the speed-up;
- how many of the sample's detections come out identical (the rest differ where the new path
  changed a rule on purpose: support points on the seam, Delaunay ties, nearest-pixel ties; see
  calib.canvas) and the largest difference of a point value where the point sets have the same
  shape.

Then the same for the feature set and the selection stages (nms, cap, objectness, tracker; box and
mask IoU) on the same tables, and finally (``--ablation-clips``) the dcase2026 macro mAP of each
emitter's output by the old and the new path (``calib emit-ablation``'s table) on a small set.

CPU time (``time.process_time``) is reported rather than wall time: the machine is shared. Run
from the repository root:

    PYTHONPATH=$PWD python tests/benchmarks/bench_emit_throughput.py [--detections 100000]
        [--old-sample 2000] [--systems lowthr,sparse] [--baseline REV] [--ablation-clips 4]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# parameters the two paths share written out (hull's pad and nms's threshold have new defaults)
EMITTERS = [{"type": "grid"}, {"type": "dense"}, {"type": "rowmajor"}, {"type": "compress"},
            {"type": "hull", "pad": 0.0}, {"type": "hull", "pad": 8.0}, {"type": "gaussian"}]
SELECTION = [{"type": "nms", "iou_threshold": 0.5}, {"type": "nms", "iou_threshold": 0.1},
             {"type": "nms", "iou": "box", "iou_threshold": 0.5}, {"type": "cap", "per_class": 1},
             {"type": "cap", "per_class": 1, "tie_break": "energy"}, {"type": "objectness"},
             {"type": "objectness", "iou": "mask"}, {"type": "tracker"}, {"type": "tracker", "iou": "mask"}]
DEFAULT_BASELINE = "37cc464"  # main before the canvas kit
RATE = {"lowthr": 4.6, "sparse": 1.6}  # detections per frame of the synthetic systems (about)

# Runs in the subprocess, with the old tree first on the path: times every spec on the table, saves
# the outputs.
WORKER = r'''
import json, sys, time
import polars as pl
from calib.stages.base import Tables, make_stage
table, out_dir, specs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
df = pl.read_parquet(table)
res = {}
for i, spec in enumerate(specs):
    if spec == "features":
        from features import compute_features
        compute_features(df.head(20))
        t = time.process_time(); out = compute_features(df); res[i] = time.process_time() - t
        out.write_parquet(f"{out_dir}/{i}.parquet")
        continue
    make_stage(dict(spec)).apply(Tables(detections=df.head(20)))  # warm up
    t = time.process_time()
    out = make_stage(dict(spec)).apply(Tables(detections=df))["detections"]
    res[i] = time.process_time() - t
    out.write_parquet(f"{out_dir}/{i}.parquet")
print(json.dumps(res))
'''


def label(spec) -> str:
    if spec == "features":
        return "features (default set)"
    return spec["type"] + "".join(f" {k}={v}" for k, v in spec.items() if k != "type")


def make_table(system: str, n: int, seed: int, root: Path):
    """``n`` detections of a synthetic system (clips of 1500 frames, as many as needed)."""
    from calib.io.dcase import ingest_predictions
    from fixtures.synth import generate

    frames = 1500
    clips = max(4, int(n / (RATE[system] * frames) * 1.15) + 1)
    out = root / system
    t = time.perf_counter()
    generate(out, seed=seed, clips=clips, frames=frames, systems=[system])
    dets, _ = ingest_predictions([out / "systems" / system], system, progress=False)
    print(f"  {system}: {clips} clips x {frames} frames -> {len(dets)} detections "
          f"({time.perf_counter() - t:.0f} s to generate)", flush=True)
    return dets.head(n)


def run_old(tree: Path, table: Path, specs, out_dir: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    res = subprocess.run([sys.executable, "-c", WORKER, str(table), str(out_dir), json.dumps(specs)],
                         env=env, capture_output=True, text=True, cwd=str(tree))
    if res.returncode:
        raise SystemExit(f"old path failed:\n{res.stderr[-3000:]}")
    return {int(k): v for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()}


def run_new(df, spec):
    from calib.stages.base import Tables, make_stage

    if spec == "features":
        from features import compute_features

        compute_features(df.head(20))
        t = time.process_time()
        out = compute_features(df)
        return time.process_time() - t, out
    make_stage(dict(spec)).apply(Tables(detections=df.head(20)))
    t = time.process_time()
    out = make_stage(dict(spec)).apply(Tables(detections=df))["detections"]
    return time.process_time() - t, out


def compare_points(old, new) -> tuple[int, int, float]:
    """(identical detections, detections compared, largest value difference where shapes agree)."""
    import numpy as np

    from calib.canvas.points import flatten

    a, b = flatten(old.get_column("points")), flatten(new.get_column("points"))
    same, worst = 0, 0.0
    for i in range(a.n):
        pa, pb = a.polygons(i), b.polygons(i)
        if len(pa) == len(pb) and all(p.shape == q.shape for p, q in zip(pa, pb)):
            d = max((float(np.abs(p - q).max()) for p, q in zip(pa, pb) if p.size), default=0.0)
            same += d == 0
            worst = max(worst, d)
    return same, a.n, worst


def compare_tables(old, new) -> str:
    if "det_id" not in old.columns:  # features: largest difference
        import numpy as np

        diffs = [float(np.nanmax(np.abs(old[c].to_numpy() - new[c].to_numpy()))) for c in old.columns if c in new.columns]
        return f"max |diff| {max(diffs):.2g}"
    keys = ["clip", "frame", "det_id"]
    k_old = set(map(tuple, old.select(keys).rows()))
    k_new = set(map(tuple, new.select(keys).rows()))
    extra = ""
    for col in ("score_objectness", "track_id"):
        if col in old.columns and col in new.columns and len(old) == len(new):
            import numpy as np

            extra = f", {col} max |diff| {np.max(np.abs(old[col].to_numpy() - new[col].to_numpy())):.2g}"
    return f"rows {len(old)} -> {len(new)}, same rows: {k_old == k_new}{extra}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detections", type=int, default=100_000)
    ap.add_argument("--old-sample", type=int, default=2000)
    ap.add_argument("--systems", default="lowthr,sparse")
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision of the old path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablation-clips", type=int, default=4, help="0 skips the mAP check")
    ap.add_argument("--skip-selection", action="store_true")
    args = ap.parse_args(argv)
    repo = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tree = tmp / "old"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(repo), "archive", args.baseline], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        print(f"old path: {args.baseline} (git archive), new path: this tree; CPU time per detection\n")
        for system in args.systems.split(","):
            df = make_table(system, args.detections, args.seed, tmp / "data")
            sample = df.head(args.old_sample)
            sample_path = tmp / f"{system}-sample.parquet"
            sample.write_parquet(sample_path)
            specs = EMITTERS + ([] if args.skip_selection else ["features"] + SELECTION)
            out_dir = tmp / f"old-{system}"
            out_dir.mkdir()
            old_t = run_old(tree, sample_path, specs, out_dir)
            import polars as pl

            print(f"\n== {system}: new path on {len(df)} detections, old on the first {len(sample)}")
            head = f"{'stage':<38} {'old us/det':>10} {'new us/det':>10} {'speed-up':>9}  outputs on the sample"
            print(head + "\n" + "-" * (len(head) + 20))
            for i, spec in enumerate(specs):
                new_t, _ = run_new(df, spec)
                old_us = old_t[i] / len(sample) * 1e6
                new_us = new_t / len(df) * 1e6
                _, new_sample = run_new(sample, spec)
                old_out = pl.read_parquet(out_dir / f"{i}.parquet")
                if spec in EMITTERS:
                    same, n, worst = compare_points(old_out, new_sample)
                    what = f"{same}/{n} identical, max point diff {worst:.3g}"
                else:
                    what = compare_tables(old_out, new_sample)
                print(f"{label(spec):<38} {old_us:>10.1f} {new_us:>10.1f} {old_us / new_us:>8.1f}x  {what}", flush=True)
        if args.ablation_clips:
            ablation(tree, tmp, args)
    return 0


ABLATION_WORKER = r'''
import json, sys
from calib.io.dcase import ingest_predictions, ingest_truth
from calib.stages.emit.ablation import ablate
root, system, emitters = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
truth, _ = ingest_truth(f"{root}/gt", progress=False)
dets, _ = ingest_predictions([f"{root}/systems/{system}"], system, progress=False)
t = ablate(dets, truth, emitters)
print(json.dumps(dict(zip(t["emitter"].to_list(), t["macro_mAP"].to_list()))))
'''
ABLATION = {"lowthr": ["grid", "dense", "rowmajor", "compress", "hull:pad=0", "hull:pad=8", "gaussian"],
            "sparse": ["grid", "dense", "rowmajor", "compress", "hull:pad=0", "hull:pad=8", "gaussian", "grid:spread=6"]}


def ablation(tree: Path, tmp: Path, args) -> None:
    from fixtures.synth import generate

    root = tmp / "ablation"
    systems = args.systems.split(",")
    generate(root, seed=args.seed, clips=args.ablation_clips, frames=300, systems=systems)
    print(f"\n== dcase2026 macro mAP of the emitted files ({args.ablation_clips} clips x 300 frames)")
    print(f"{'system':<8} {'emitter':<16} {'old':>8} {'new':>8} {'change':>9}")
    for system in systems:
        emitters = ABLATION.get(system, ABLATION["lowthr"])
        res = {}
        for name, path in (("old", str(tree)), ("new", str(Path(__file__).resolve().parents[2]))):
            out = subprocess.run([sys.executable, "-c", ABLATION_WORKER, str(root), system, json.dumps(emitters)],
                                 env=dict(os.environ, PYTHONPATH=path), capture_output=True, text=True, cwd=path)
            if out.returncode:
                raise SystemExit(f"ablation ({name}) failed:\n{out.stderr[-3000:]}")
            res[name] = json.loads(out.stdout.strip().splitlines()[-1])
        for em in res["new"]:
            o, n = res["old"].get(em), res["new"][em]
            print(f"{system:<8} {em:<16} {o:>8.4f} {n:>8.4f} {n - o:>+9.4f}")


if __name__ == "__main__":
    sys.exit(main())
