"""Small synthetic detections with a known matchability signal, and their match table.

The best IoU of a detection rises with its peak's prominence over its other points and with its raw
score, plus noise; so a reranker has something to learn, and tests need no scorer."""
from __future__ import annotations

import numpy as np
import polars as pl

from calib.tables import DETECTIONS


def make(n_clips: int = 10, frames: int = 12, per_frame: int = 6, seed: int = 0, system: str = "sys",
         sites: tuple[str, ...] = ("sony", "tau")):
    rng = np.random.default_rng(seed)
    rows, match, truth_splits = [], [], {}
    for c in range(n_clips):
        clip = f"clip{c:02d}"
        truth_splits[clip] = f"dev-train-{sites[c % len(sites)]}"
        det_id = 0
        for f in range(frames):
            for _ in range(per_frame):
                n = int(rng.integers(1, 12))
                cx, cy = rng.uniform(0, 360), rng.uniform(20, 160)
                xs = np.mod(cx + rng.normal(0, 6, n), 360)
                ys = np.clip(cy + rng.normal(0, 6, n), 0, 180)
                es = rng.uniform(0.1, 0.5, n)
                peaked = rng.random() < 0.5
                if peaked:
                    es[0] = 1.0
                score = float(np.clip(rng.normal(0.45 + 0.1 * peaked, 0.2), 0.01, 0.99))
                quality = 0.45 * peaked + 0.25 * score + rng.normal(0, 0.08)
                rows.append(dict(system=system, clip=clip, frame=f, det_id=det_id, class_id=int(rng.integers(0, 4)),
                                 score=score, distance=None, instance_id=None,
                                 points=[[dict(x=float(x), y=float(y), e=float(e)) for x, y, e in zip(xs, ys, es)]],
                                 extra=None))
                match.append(dict(system=system, clip=clip, det_id=det_id, best_iou=float(np.clip(quality, 0, 1))))
                det_id += 1
    dets = pl.DataFrame(rows, schema=DETECTIONS)
    return dets, pl.DataFrame(match), truth_splits


def truth_for(splits: dict[str, str]) -> pl.DataFrame:
    """A minimal truth table naming each clip's split (one GT per clip, frame 0)."""
    from calib.tables import TRUTH

    return pl.DataFrame([dict(clip=c, split=s, frame=0, ann_id=0, class_id=0, instance_id=None, distance=None,
                              points=[[dict(x=10.0, y=10.0, e=1.0)]], category_str=False, extra=None)
                         for c, s in sorted(splits.items())], schema=TRUTH)
