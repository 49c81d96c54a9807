"""``tracker``: links detections of one class across consecutive frames into tracks.

Per (system, clip, class), frame by frame: the detections of the frame are matched to the live
tracks by the Hungarian algorithm on IoU with each track's last detection (pairs below the
threshold stay unmatched). A matched track takes the detection; an unmatched detection starts a
track; an unmatched track *coasts*: for up to ``max_age`` frames it emits a copy of its last
detection with the score decayed by ``decay`` per frame (it can still be matched again), then dies.
Tracks matched fewer than ``min_hits`` times are removed with all their rows.

The IoU of every pair a track could ask for (a detection and one of the same class up to
``max_age + 1`` frames later) is computed up front for the whole table (box or mask IoU, batched);
the frame-by-frame association then only looks them up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment

from calib.canvas.points import flatten, ragged_arange
from calib.canvas.sphere import boxes
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.select.common import IOU_MODES, group_ids, group_rows, pair_overlaps


def candidate_pairs(df: pl.DataFrame, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (a, b) of rows of the same system, clip and class with
    ``1 <= frame[b] - frame[a] <= max_gap``: the pairs a tracker may compare."""
    if len(df) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    series = group_ids(df, ("system", "clip", "class_id"))
    frames = df.get_column("frame").to_numpy().astype(np.int64)
    order = np.lexsort((frames, series))
    f = frames[order] - frames.min()
    key = series[order] * (int(f.max()) + max_gap + 2) + f  # sorted: series, then frame
    first_later = np.searchsorted(key, key, side="right")  # the first row of a later frame
    reach = np.searchsorted(key, key + max_gap, side="right")  # past the last row within reach
    n_after = reach - first_later
    a = np.repeat(np.arange(order.size), n_after)
    b = np.repeat(first_later, n_after) + ragged_arange(n_after)
    return order[a], order[b]


@dataclass
class _Track:
    track_id: int
    last_row: int  # row of its last matched detection
    last_score: float
    hits: int = 1
    age: int = 0  # frames since its last match
    rows: list = field(default_factory=list)  # real rows
    coasts: list = field(default_factory=list)  # (source row, frame, age, score)


def link_frames(frames: np.ndarray, rows_by_frame: dict[int, np.ndarray], iou_fn, scores: np.ndarray, *,
                iou_threshold: float, max_age: int, decay: float, first_id: int, last_frame: int) -> list[_Track]:
    """Tracks of one class in one clip. ``iou_fn(track_rows, det_rows)`` gives the IoU matrix."""
    tracks: list[_Track] = []
    live: list[_Track] = []
    next_id = first_id
    f = int(frames.min())
    while f <= last_frame and (live or f <= frames.max()):
        dets = rows_by_frame.get(f, np.zeros(0, np.int64))
        matched_t, matched_d = [], []
        if live and len(dets):
            iou = iou_fn(np.array([t.last_row for t in live]), dets)
            ti, di = linear_sum_assignment(-iou)
            ok = iou[ti, di] >= iou_threshold
            matched_t, matched_d = list(ti[ok]), list(di[ok])
        for ti, di in zip(matched_t, matched_d):
            t, r = live[ti], int(dets[di])
            t.last_row, t.last_score, t.age = r, float(scores[r]), 0
            t.hits += 1
            t.rows.append(r)
        still = []
        for k, t in enumerate(live):
            if k in matched_t:
                still.append(t)
                continue
            t.age += 1
            if t.age <= max_age:
                t.coasts.append((t.last_row, f, t.age, t.last_score * decay ** t.age))
                still.append(t)
        live = still
        taken = set(matched_d)
        for k, r in enumerate(dets):
            if k not in taken:
                t = _Track(next_id, int(r), float(scores[r]), rows=[int(r)])
                next_id += 1
                tracks.append(t)
                live.append(t)
        f += 1
    return tracks


@register("tracker")
class Tracker(Stage):
    """Temporal tracker: link a class's detections across frames, coast short gaps, drop short tracks.

    Class-constrained Hungarian association of consecutive frames on IoU (``iou`` box or mask,
    pairs need >= ``iou_threshold``); unmatched tracks coast up to ``max_age`` frames as copies of their last detection with the score times ``decay`` per frame; tracks with
    fewer than ``min_hits`` matched detections are removed. Adds ``track_id`` (unique per clip) and
    ``track_age`` (0 for real detections, k for the k-th coasted frame). Kept detections stay in
    table order; coasted rows follow, with new det_ids after their clip's last."""

    needs_columns = ("points", "score")
    adds_columns = ("track_id", "track_age")

    PARAMS = declare(
        iou_threshold=Param(float, 0.3, "a detection continues a track when its IoU with the track's last detection "
                            "reaches this", unit="IoU", ge=0, le=1),
        iou=Param(str, "box", "overlap measure: seam-aware box IoU ('box') or soft IoU of the energy maps ('mask')",
                  choices=IOU_MODES),
        max_age=Param(int, 2, "frames an unmatched track coasts (emitting decayed copies) before it ends",
                      unit="frames", ge=0),
        decay=Param(float, 0.8, "score factor per coasted frame", unit="factor per frame", ge=0, le=1),
        min_hits=Param(int, 2, "tracks matched fewer times than this are removed with all their rows",
                       unit="detections", ge=0),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        df = tables["detections"]
        out_schema = df.schema | {"track_id": pl.Int64, "track_age": pl.Int64}
        if len(df) == 0:
            return tables.replace(detections=pl.DataFrame(schema=out_schema))
        fp = flatten(df.get_column("points"))
        scores = df.get_column("score").to_numpy().astype(np.float64)
        frames = df.get_column("frame").to_numpy()
        classes = df.get_column("class_id").to_numpy()
        track_of = np.full(len(df), -1, np.int64)
        keep = np.zeros(len(df), bool)
        coast_src, coast_frame, coast_age, coast_score, coast_track, coast_det = [], [], [], [], [], []
        det_ids = df.get_column("det_id").to_numpy()
        # the IoU of every pair a track can ask for, looked up by (last row, detection row)
        pa, pb = candidate_pairs(df, int(self.max_age) + 1)
        piou = pair_overlaps(fp, boxes(fp).rows(), pa, pb, self.iou)
        n = len(df)
        pkey = pa * n + pb
        o = np.argsort(pkey)
        pkey, piou = pkey[o], piou[o]

        def iou_fn(a_rows, b_rows):
            k = (np.asarray(a_rows, np.int64)[:, None] * n + np.asarray(b_rows, np.int64)[None, :]).ravel()
            i = np.minimum(np.searchsorted(pkey, k), max(pkey.size - 1, 0))
            found = pkey[i] == k if pkey.size else np.zeros(k.size, bool)
            return np.where(found, piou[i] if pkey.size else 0.0, 0.0).reshape(len(a_rows), len(b_rows))

        for clip_rows in group_rows(df, ("system", "clip")):
            last_frame = int(frames[clip_rows].max())
            next_det = int(det_ids[clip_rows].max()) + 1
            next_id = 0
            clip_coasts = []
            for c in np.unique(classes[clip_rows]):
                rows = clip_rows[classes[clip_rows] == c]
                rows = rows[np.lexsort((det_ids[rows], frames[rows]))]
                fr = frames[rows]
                cut = np.flatnonzero(np.diff(fr)) + 1
                by_frame = {int(g[0]): rows_g for g, rows_g in zip(np.split(fr, cut), np.split(rows, cut))}
                tracks = link_frames(fr, by_frame, iou_fn, scores, iou_threshold=self.iou_threshold,
                                     max_age=int(self.max_age), decay=self.decay, first_id=next_id,
                                     last_frame=last_frame)
                next_id += len(tracks)
                for t in tracks:
                    if t.hits < self.min_hits:
                        continue
                    track_of[t.rows] = t.track_id
                    keep[t.rows] = True
                    clip_coasts += [(fr_, c, t.track_id, src, age, sc) for src, fr_, age, sc in t.coasts]
            for fr_, c, tid, src, age, sc in sorted(clip_coasts):
                coast_src.append(src)
                coast_frame.append(fr_)
                coast_age.append(age)
                coast_score.append(sc)
                coast_track.append(tid)
                coast_det.append(next_det)
                next_det += 1
        real = df.with_columns(pl.Series("track_id", track_of, pl.Int64), pl.lit(0, pl.Int64).alias("track_age"))
        real = real.filter(pl.Series(keep))
        if coast_src:
            coasted = df[np.asarray(coast_src)].with_columns(
                pl.Series("frame", coast_frame, pl.Int64), pl.Series("det_id", coast_det, pl.Int64),
                pl.Series("score", coast_score, pl.Float64),
                pl.Series("track_id", coast_track, pl.Int64), pl.Series("track_age", coast_age, pl.Int64))
            real = pl.concat([real, coasted.select(real.columns)], how="vertical")
        return tables.replace(detections=real.select(list(out_schema)))
