"""Rendering GT maps ahead of scoring, on CPU time a run would leave idle.

Most of a dev-scale ``calib run`` is spent in the official renderer's triangulations of GT
polygons (Qhull, one per polygon, no exact shortcut). The evaluation clips' GT does not depend on
what the chain does, so while the chain runs (much of it on one core: features, the LightGBM fit,
caps, emission), a helper process renders those clips' GT maps into the scoring cache
(:func:`calib.score.api.prepare_gt` with the run's input detections, clip by clip) and scoring then
finds them there. The helper runs at the lowest CPU priority (``nice`` 19), so it only takes a core
that would otherwise idle and never slows the chain's own workers; it is stopped when scoring
starts (a clip it had not finished is rendered by scoring, as without it).

Nothing changes in the results: a GT map is the same whoever renders it (cache entries are written
atomically, keyed by the clip's content). Only runs with local workers (``--jobs`` other than 1,
the loky backend) start a helper, on POSIX, when the clips' GT is worth at least
:data:`PREFETCH_MIN_SECONDS` of rendering.

The helper is ``python -m calib.score.prefetch``: it reads a JSON job on stdin (the cached input
tables' paths, the clips, the cache folder) and the clips' rows from those Parquet files (row
groups of one clip's size, :data:`calib.recipe.inputs.INPUT_ROW_GROUP_ROWS`).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

#: estimated seconds of GT rendering below which no helper is started (its start costs ~2 s)
PREFETCH_MIN_SECONDS = 30.0
#: rendering seconds per GT point (the scorer's estimate: calib.score.api.GT_S_PER_BYTE x 30 bytes)
GT_S_PER_POINT = 6e-6
LOG_NAME = "prefetch.log"


@dataclass
class GTPrefetch:
    """A running helper (see the module doc); :meth:`stop` ends it."""

    proc: subprocess.Popen
    log_path: Path

    def stop(self, timeout: float = 10.0) -> None:
        """End the helper now (SIGTERM: the clip in progress is dropped, its temp file removed) and
        wait for it; idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def gt_points(truth, clips: Sequence[str]) -> int:
    """Points of the GT annotations of ``clips`` in a truth table."""
    import polars as pl

    rows = truth.filter(pl.col("clip").is_in(list(clips)))
    if rows.height == 0:
        return 0
    return int(rows.select(pl.col("points").list.eval(pl.element().list.len()).list.sum().sum()).item() or 0)


def should_prefetch(jobs: int, backend: str, estimated_seconds: float) -> bool:
    """Whether a helper may start: local worker processes allowed (``jobs`` != 1, loky), a POSIX
    system (``nice``), and enough GT to render."""
    return (jobs != 1 and backend == "loky" and hasattr(os, "nice")
            and estimated_seconds >= PREFETCH_MIN_SECONDS)


def start(truth_path: Path, detection_paths: Sequence[Path], clips: Sequence[str], cache_dir: Path) -> GTPrefetch:
    """Start the helper on ``clips`` (rendered in this order) of the cached truth table at
    ``truth_path``, for the detections of the tables at ``detection_paths``; GT maps go to
    ``cache_dir`` (the scoring cache). Its messages go to ``cache_dir``/prefetch.log."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    job = {"truth": str(truth_path), "detections": [str(p) for p in detection_paths], "clips": list(clips),
           "cache_dir": str(cache_dir), "parent": os.getpid()}
    log_path = cache_dir / LOG_NAME
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "calib.score.prefetch"], stdin=subprocess.PIPE,
                                stdout=log, stderr=log)
    proc.stdin.write(json.dumps(job).encode())
    proc.stdin.close()
    return GTPrefetch(proc, log_path)


def _terminate(signum, frame):
    raise SystemExit(0)  # unwinds: a cache entry being written removes its temp file


def run_job(job: dict) -> int:
    """Render the job's clips' GT maps (the helper's body); returns the clips rendered."""
    from calib.score.api import prepare_gt
    from calib.tables import read_clip_rows

    done = 0
    for clip in job["clips"]:
        if os.getppid() != job["parent"]:
            break  # the run is gone
        truth = read_clip_rows(job["truth"], "truth", clip)
        dets = [read_clip_rows(p, "detections", clip) for p in job["detections"]]
        dets = [d for d in dets if d.height]
        if truth.height and dets:
            done += prepare_gt(truth, dets, cache_dir=job["cache_dir"], jobs=1)
        del truth, dets  # one clip's rows at a time
    return done


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    os.nice(19)
    job = json.loads(sys.stdin.read())
    n = run_job(job)
    print(f"prefetched the GT maps of {n} of {len(job['clips'])} clip(s)", flush=True)


if __name__ == "__main__":
    main()
