"""Emission, feature and selection throughput: the batch canvas kit against the per-detection path
it replaced, measured in one run.

The old path is the code base at ``--baseline`` (a git revision, default the commit before the
canvas kit), exported with ``git archive`` into a temporary folder and run in a subprocess on the
same table; nothing of it is kept in the package. For each synthetic system (``lowthr``: 3-degree
lattice blobs; ``sparse``: 6-20 scattered peaks) the benchmark builds a table of ``--detections``
detections and prints, per emitter (grid, dense, rowmajor, compress, hull, gaussian):

- CPU time per detection of the old path (on the first ``--old-sample`` detections: it is slow) and
  of the new one (on all of them): cold (the emitted-detections cache empty) and warm (the same
  table emitted again, every detection answered from the cache), and both speed-ups;
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
        [--same-as REV] [--skip-selection] [--emitters grid,dense,...]

``--same-as REV`` also counts, on all the detections, those whose emitted points differ from
what revision REV's emitters give (e.g. the main before the fast paths), and says whether each
emitter's whole output table is equal to REV's (every column, every value: byte-identical points).
``--emitters`` keeps only the emitters of these types (default: all).
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


def run_new(df, spec, warm: bool = False):
    """CPU time of the stage on ``df`` (and its output): cold, with the emitted-detections cache
    empty; with ``warm``, also the time of a second run answered from the cache."""
    from calib.stages.base import Tables, make_stage
    from calib.stages.emit.cache import emit_cache

    if spec == "features":
        from features import compute_features

        compute_features(df.head(20))
        t = time.process_time()
        out = compute_features(df)
        return time.process_time() - t, out, None
    make_stage(dict(spec)).apply(Tables(detections=df.head(20)))
    emit_cache().clear()
    t = time.process_time()
    out = make_stage(dict(spec)).apply(Tables(detections=df))["detections"]
    cold = time.process_time() - t
    hot = None
    if warm:
        t = time.process_time()
        again = make_stage(dict(spec)).apply(Tables(detections=df))["detections"]
        hot = time.process_time() - t
        if not again.equals(out):
            raise SystemExit(f"{label(spec)}: the warm run's output differs from the cold run's")
    emit_cache().clear()
    return cold, out, hot


def compare_points(old, new) -> tuple[int, int, float]:
    """(identical detections, detections compared, largest value difference where shapes agree)."""
    import numpy as np

    from calib.canvas.points import flatten

    a, b = flatten(old.get_column("points")), flatten(new.get_column("points"))
    shape = (a.count == b.count) & (np.diff(a.det_off) == np.diff(b.det_off))
    sa, _ = a.select(shape)
    sb, _ = b.select(shape)
    polys = np.bincount(sa.det_of_poly, weights=sa.poly_count != sb.poly_count, minlength=sa.n) == 0
    d = np.maximum(np.maximum(np.abs(sa.x - sb.x), np.abs(sa.y - sb.y)), np.abs(sa.e - sb.e))
    worst = sa.reduce(np.maximum, np.nan_to_num(d, nan=np.inf), empty=0.0)
    equal = polys & (worst == 0)
    return int(equal.sum()), a.n, float(worst[polys].max(initial=0.0))


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
    ap.add_argument("--emitters", help="only the emitters of these types, comma-separated (default: all)")
    ap.add_argument("--same-as", metavar="REV", help="also run the emitters of this revision (e.g. the main "
                    "the fast paths replaced) on all the detections and count those whose points differ")
    ap.add_argument("--cache-mib", type=float, default=4096,
                    help="memory of the emitted-detections cache for the warm runs (default 4096)")
    args = ap.parse_args(argv)
    emitters = EMITTERS
    if args.emitters:
        wanted = args.emitters.split(",")
        unknown = sorted(set(wanted) - {e["type"] for e in EMITTERS})
        if unknown:
            ap.error(f"unknown emitter type(s) {unknown}; known: {sorted({e['type'] for e in EMITTERS})}")
        emitters = [e for e in EMITTERS if e["type"] in wanted]
    from calib.stages.emit.cache import emit_cache

    emit_cache().max_bytes = int(args.cache_mib * 2**20)
    repo = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tree = tmp / "old"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(repo), "archive", args.baseline], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        if args.same_as:
            (tmp / "same-as").mkdir()
            archive = subprocess.run(["git", "-C", str(repo), "archive", args.same_as], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(tmp / "same-as")], input=archive.stdout, check=True)
        print(f"old path: {args.baseline} (git archive), new path: this tree; CPU time per detection; new cold: "
              "the emitted-detections cache empty, new warm: the same table again (answered from the cache)\n")
        for system in args.systems.split(","):
            df = make_table(system, args.detections, args.seed, tmp / "data")
            sample = df.head(args.old_sample)
            sample_path = tmp / f"{system}-sample.parquet"
            sample.write_parquet(sample_path)
            specs = emitters + ([] if args.skip_selection else ["features"] + SELECTION)
            out_dir = tmp / f"old-{system}"
            out_dir.mkdir()
            old_t = run_old(tree, sample_path, specs, out_dir)
            import polars as pl

            print(f"\n== {system}: new path on {len(df)} detections, old on the first {len(sample)}")
            head = (f"{'stage':<30} {'old us/det':>10} {'new cold':>9} {'new warm':>9} {'cold x':>7} {'warm x':>7}  "
                    "outputs on the sample")
            print(head + "\n" + "-" * (len(head) + 20))
            for i, spec in enumerate(specs):
                emitter = spec in emitters
                new_t, _, warm_t = run_new(df, spec, warm=emitter)
                old_us = old_t[i] / len(sample) * 1e6
                new_us = new_t / len(df) * 1e6
                _, new_sample, _ = run_new(sample, spec)
                old_out = pl.read_parquet(out_dir / f"{i}.parquet")
                if emitter:
                    same, n, worst = compare_points(old_out, new_sample)
                    what = f"{same}/{n} identical, max point diff {worst:.3g}"
                    warm_us = warm_t / len(df) * 1e6
                    warm = f"{warm_us:>9.1f} {old_us / new_us:>6.1f}x {old_us / warm_us:>6.1f}x"
                else:
                    what = compare_tables(old_out, new_sample)
                    warm = f"{'-':>9} {old_us / new_us:>6.1f}x {'-':>7}"
                print(f"{label(spec):<30} {old_us:>10.1f} {new_us:>9.1f} {warm}  {what}", flush=True)
            if args.same_as:
                same_as(tmp / "same-as", df, tmp, system, args.same_as, emitters)
        if args.ablation_clips:
            ablation(tree, tmp, args)
    return 0


def same_as(tree: Path, df, tmp: Path, system: str, rev: str, emitters=EMITTERS) -> None:
    """Run the emitters of ``tree`` on all of ``df`` and count the detections whose emitted points
    differ from this tree's; say whether the whole output tables are equal."""
    import polars as pl

    path = tmp / f"{system}-all.parquet"
    df.write_parquet(path)
    out_dir = tmp / f"same-as-{system}"
    out_dir.mkdir()
    run_old(tree, path, emitters, out_dir)
    print(f"-- emitted points against {rev} on all {len(df)} detections")
    for i, spec in enumerate(emitters):
        _, new, _ = run_new(df, spec)
        old = pl.read_parquet(out_dir / f"{i}.parquet")
        same, n, worst = compare_points(old, new)
        print(f"{label(spec):<30} {n - same:>7} of {n} differ, max point diff {worst:.3g}, "
              f"whole table equal: {old.equals(new)}", flush=True)


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
