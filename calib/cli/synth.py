"""`calib synth`: write a deterministic synthetic STAIRS26-like data set."""
from __future__ import annotations

import argparse
import sys
import time

DESCRIPTION = """\
Write a synthetic data set shaped like STAIRS26 (DCASE 2026 Task 3): dev clips with ground
truth in the four split folders, evaluation clips without it, the prediction folders of
several simulated systems (every dev and evaluation clip), a noisy SELD teacher and class
priors. Use it to rehearse the whole flow (run -> portfolio -> package) before the real
data, to test a reranker or a fusion, or to benchmark the scorer. The same --seed and
options give byte-identical files, and clip k is the same whatever --clips is, so a small
set is a prefix of a bigger one."""

EPILOG = """\
what it writes (OUT_DIR must not exist or be empty, unless --overwrite):
  gt/dev-train-sony/<clip>_std.json   ground truth of the dev clips (what STAIRS26 has under
  gt/dev-test-sony/ ...               metadata_dev/); clips go round-robin to dev-train-sony,
                                      dev-test-sony, dev-train-tau, dev-test-tau, named like
                                      fold3_room21_mix001 (fold 3 = train, fold 4 = test)
  systems/<system>/<clip>.json        one folder per simulated system: its output on every dev
                                      clip and every evaluation clip (mix001, mix002, ...)
  eval_gt/<clip>_std.json             the evaluation clips' ground truth, which the challenge
                                      never gives out: outside gt/, so no recipe sees it; score
                                      a submission package against it afterwards
  labels/<system>.csv                 the generator's truth for every detection (tp, confused,
                                      dup, fp; the GT annotation it came from) to check rerankers
  teacher/<clip>.csv                  SELD output, 2024 form: frame,class,track,az,el,dist
  priors.csv                          class priors per clip and 2-s window (end_frame exclusive)
  manifest.json                       seed, options, splits, systems, statistics
The shipped recipes read this layout as it is (calib run RECIPE --data OUT_DIR).

simulated systems (--systems, comma-separated; default all but pixel):
  lowthr   low threshold: misses, 5-20 deg errors, confusions, floods of low-score false
           positives, duplicates, masks on a 3-deg lattice; its scores say little
  sparse   6-20 sub-pixel peak points per mask, few false positives (scores ~0 under the
           dcase2026 soft IoU, like real sparse submissions)
  grid     3x3 grids, scores with 2 decimals (many ties)
  dense    blobs shaped like the GT on a 2-deg lattice, some two-lobe and 1-2 point masks
  audio    strong on classes 0-4, 11, 12 (speech, clapping, phone, laughter, bell, knock)
  av       strong on classes 5-10 (domestic, footsteps, door, music, instrument, tap)
  pixel    every integer pixel of GT-like blobs: big files (over the scorer's 20 MiB limit
           for long clips), for scorer tests and benchmarks
True detections have more peaked masks, same-class neighbours in nearby frames and longer
tracks than false ones: the signal a learned reranker should find.

size and time: a GT annotation holds a few hundred to a few thousand points (~15 kB at
--blob-scale 1); a 1500-frame clip at --density 1.5 has ~30 MB of GT. --blob-scale 0.5
makes blobs half as wide (about 4x smaller files). Prediction files stay under the scorer's
20 MiB limit at the default density; the command warns when one does not. Measured: 78 clips
x 1500 frames with lowthr,dense,sparse and --jobs 2 write 4.8 GB in ~3 min (1.4 GB in
~1 min at --blob-scale 0.5) on 2 busy cores; evaluation clips cost as much as dev clips
(--eval-clips 20: about a quarter more).

examples:
  calib synth demo/                  # 8 dev + 2 evaluation clips x 100 frames, all systems
  calib synth big/ --clips 78 --frames 1500 --eval-clips 20 --systems lowthr,dense,sparse --jobs 2
  calib synth small/ --clips 4 --frames 50 --density 0.8 --blob-scale 0.5 --seed 7   # small files"""


def default_eval_clips(clips: int) -> int:
    """Evaluation clips written when --eval-clips is not given: a quarter of the dev clips, rounded up."""
    return -(-clips // 4)


def _systems(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one system name")
    return names


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="write a deterministic synthetic STAIRS26-like data set",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to create")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--clips", type=int, default=8, help="number of dev clips, with ground truth (default 8)")
    p.add_argument("--eval-clips", type=int, default=None, metavar="N",
                   help="number of evaluation clips, without ground truth under gt/ (default: a quarter of "
                   "--clips, rounded up; 0: none)")
    p.add_argument("--frames", type=int, default=100,
                   help="frames per clip, 10 per second (default 100; real clips have ~600-3000)")
    p.add_argument("--systems", type=_systems, default=None, metavar="A,B,...",
                   help="simulated systems to write (default: lowthr,sparse,grid,dense,audio,av)")
    p.add_argument("--density", type=float, default=1.5, metavar="EVENTS",
                   help="mean number of active events per frame (default 1.5; at most --max-overlap)")
    p.add_argument("--max-overlap", type=int, default=6, help="most events active in one frame (default 6)")
    p.add_argument("--blob-scale", type=float, default=1.0,
                   help="scale of the GT blob width sigma (6-11 deg at 1.0); smaller = smaller files")
    p.add_argument("--gt-threshold", type=float, default=0.24,
                   help="lowest GT intensity kept; a GT blob is every pixel at or above it (default 0.24)")
    p.add_argument("--category-str-rate", type=float, default=0.02,
                   help="fraction of GT category_id written as strings, as in real files (default 0.02)")
    p.add_argument("--jobs", type=int, default=1, help="clips generated in parallel (joblib; default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from fixtures.synth import generate

    t0 = time.perf_counter()
    try:
        m = generate(args.out_dir, seed=args.seed, clips=args.clips, frames=args.frames,
                     systems=args.systems, events_per_frame=args.density, max_overlap=args.max_overlap,
                     blob_scale=args.blob_scale, gt_threshold=args.gt_threshold,
                     category_str_rate=args.category_str_rate, n_jobs=args.jobs,
                     eval_clips=default_eval_clips(args.clips) if args.eval_clips is None else args.eval_clips,
                     progress=not args.quiet, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as e:
        print(f"calib synth: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        st = m["stats"]
        print(f"wrote {m['root']} in {time.perf_counter() - t0:.1f} s: {len(m['clips'])} dev clips, "
              f"{len(m['eval_clips'])} evaluation clips, "
              f"{st['gt_annotations']} GT annotations ({st['events_per_frame']} per frame), "
              f"GT {st['gt_bytes'] / 1e6:.1f} MB")
        for name, s in m["systems"].items():
            print(f"  {name:8s} {s['n_det']:8d} detections  {s['bytes'] / 1e6:8.1f} MB  "
                  f"largest file {s['max_file_bytes'] / 1e6:.1f} MB")
    return 0
