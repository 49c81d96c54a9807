"""``calib.score.score`` and friends: the scorer other stages call.

Inputs are either folders (the official file rules apply, GT files are hashed and their
renderings reused without parsing them again) or ``{clip: [Annotation]}`` dicts. Clips are
scored in sorted file-name order, as the official scripts walk them; a prediction clip without
GT is skipped and listed, a GT clip without predictions is not scored (also as officially).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import polars as pl

from calib.score import cache as _cache
from calib.score.aggregate import concat_records, metrics_from_records
from calib.score.annotations import (
    PROTOCOLS,
    Annotation,
    ScoreInputError,
    check_protocol,
    file_digest,
    keep_scored_classes,
    pair_files,
    parse_annotations,
    read_bytes,
)
from calib.score.matching import KIND_FN, KIND_MATCHED
from calib.score.thresholds import parse_thresholds, threshold_label
from calib.tables import CLASS_NAMES, N_CLASSES

ENGINES = ("fast", "reference")
BACKENDS = ("loky", "threading", "dask")
CEILING_IOUS = (0.1, 0.25, 0.5)


@dataclass
class ScoreResult:
    """What one scoring run gives.

    metrics: the official metrics (the protocol's keys; NaN where undefined);
    matches: one row per scored prediction (dcase2026, when asked for), gt_matches: one row per
    GT annotation with its best same-class prediction IoU; recall_ceiling: fraction of GT whose
    best prediction reaches each IoU whatever the scores; skipped: prediction clips without GT;
    details: extra numbers (n_pearson_pairs for the coco protocol, clips scored, GT clips left
    unscored)."""

    protocol: str
    metrics: dict
    matches: pl.DataFrame | None = None
    gt_matches: pl.DataFrame | None = None
    recall_ceiling: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    records: dict | None = field(default=None, repr=False)

    def metrics_json(self) -> dict:
        """metrics with NaN written as None (JSON null)."""
        return _json_ready(self.metrics)


def _json_ready(obj):
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# ---------------------------------------------------------------------------------------------
# clip jobs: where each clip's annotations come from


@dataclass
class _Source:
    """One side of one clip: annotations in hand, or a file read lazily (in the worker)."""

    anns: list | None = None
    path: Path | None = None
    kind: str = "pred"
    protocol: str = "dcase2026"
    digest: str | None = None

    def load(self) -> list[Annotation]:
        if self.anns is not None:
            return self.anns
        data = read_bytes(self.path, self.kind, self.protocol)
        return keep_scored_classes(parse_annotations(data, str(self.path), self.kind))

    def content_digest(self) -> str:
        if self.digest is None:
            if self.anns is not None:
                self.digest = _cache.annotations_digest(self.anns)
            else:
                self.digest = file_digest(read_bytes(self.path, self.kind, self.protocol))
        return self.digest


def _clip_order(clips) -> list[str]:
    return sorted(clips, key=lambda c: c + ".json")


def _plan(pred, gt, protocol) -> tuple[list[tuple[str, _Source, _Source]], list[str], list[str]]:
    """[(clip, pred source, gt source)] in scoring order, skipped pred clips, unscored GT clips."""
    if isinstance(pred, (str, os.PathLike)) and isinstance(gt, (str, os.PathLike)):
        files = pair_files(pred, gt, protocol)
        jobs = [(clip, _Source(path=pf, kind="pred", protocol=protocol), _Source(path=gf, kind="gt", protocol=protocol))
                for clip, pf, gf in files.pairs]
        return jobs, files.skipped, files.gt_only
    if isinstance(pred, (str, os.PathLike)) or isinstance(gt, (str, os.PathLike)):
        from calib.score.annotations import load_dir

        pred = load_dir(pred, "pred", protocol) if isinstance(pred, (str, os.PathLike)) else pred
        gt = load_dir(gt, "gt", protocol) if isinstance(gt, (str, os.PathLike)) else gt
    if not isinstance(pred, Mapping) or not isinstance(gt, Mapping):
        raise TypeError("pred and gt must both be folders or {clip: [Annotation]} mappings")
    jobs = []
    for clip in _clip_order(set(pred) & set(gt)):
        jobs.append((clip, _Source(anns=keep_scored_classes(pred[clip])), _Source(anns=keep_scored_classes(gt[clip]), kind="gt")))
    skipped = _clip_order(set(pred) - set(gt))
    return jobs, skipped, _clip_order(set(gt) - set(pred))


# ---------------------------------------------------------------------------------------------
# parallel map


def _limited(fn, *args):
    """Run fn with BLAS on one thread: scipy's tiny per-simplex LAPACK calls crawl otherwise."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(*args)


def _parallel_map(fn, items, jobs: int, backend: str, scheduler: str | None) -> list:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    items = list(items)
    if not items:
        return []
    if backend != "dask" and (jobs == 1 or len(items) == 1):
        return [_limited(fn, *it) for it in items]
    from joblib import Parallel, delayed, parallel_config

    if backend == "dask":
        if not scheduler:
            raise ValueError("backend 'dask' needs a scheduler address (--scheduler tcp://HOST:PORT)")
        from dask.distributed import Client

        with Client(scheduler, set_as_default=False) as client:
            with parallel_config(backend="dask", client=client):
                return Parallel(n_jobs=-1)(delayed(_limited)(fn, *it) for it in items)
    n_jobs = jobs if jobs > 0 else -1
    return Parallel(n_jobs=n_jobs, backend=backend)(delayed(_limited)(fn, *it) for it in items)


# ---------------------------------------------------------------------------------------------
# dcase2026


def _gt_maps_job(src: _Source):
    from calib.score.fast import render_gt_maps

    return render_gt_maps(src.load())


def _fast_clip_job(clip, psrc: _Source, gt_maps):
    from calib.score.fast import score_clip_fast

    return score_clip_fast(clip, psrc.load(), gt_maps).arrays()


def _reference_clip_job(clip, psrc: _Source, gsrc: _Source):
    from calib.score.reference import score_clip_reference

    return score_clip_reference(clip, psrc.load(), gsrc.load()).arrays()


def _dcase_gt_maps(plan, jobs, cache_dir, backend, scheduler):
    from calib.score.fast import GTMaps

    keys = [_cache.entry_key("dcase2026", gsrc.content_digest()) for _, _, gsrc in plan]
    maps = [_cache.GT_CACHE.get(k, cache_dir, GTMaps) for k in keys]
    missing = [i for i, m in enumerate(maps) if m is None]
    rendered = _parallel_map(_gt_maps_job, [(plan[i][2],) for i in missing], jobs, backend, scheduler)
    for i, m in zip(missing, rendered):
        _cache.GT_CACHE.put(keys[i], m, cache_dir)
        maps[i] = m
    return maps


def _score_dcase(plan, thresholds, engine, jobs, cache_dir, backend, scheduler):
    if engine == "reference":
        recs = [_limited(_reference_clip_job, clip, p, g) for clip, p, g in plan]
    else:
        maps = _dcase_gt_maps(plan, jobs, cache_dir, backend, scheduler)
        recs = _parallel_map(_fast_clip_job, [(clip, p, m) for (clip, p, _), m in zip(plan, maps)],
                             jobs, backend, scheduler)
    clip_col = np.concatenate([np.full(len(r["kind"]), i, dtype=np.int32) for i, r in enumerate(recs)]) \
        if recs else np.zeros(0, np.int32)
    records = concat_records(recs)
    records["clip_idx"] = clip_col
    return records


def _match_tables(records, clips, thresholds) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(one row per prediction, one row per GT annotation), each sorted by clip then index."""
    kind = records["kind"]
    matched = kind == KIND_MATCHED
    base = pl.DataFrame({
        "clip_idx": records["clip_idx"],
        "matched": matched,
        "frame": records["frame"],
        "det": records["det"],
        "gt": records["gt"],
        "class_id": records["cls"],
        "score": records["score"],
        "iou32": records["iou"],
        "best": records["best"].astype(np.float64),
        "gt_best": records["gt_best"].astype(np.float64),
        "pearson": records["pearson"],
        "kind": kind,
    })
    clip = pl.col("clip_idx").replace_strict(dict(enumerate(clips)), return_dtype=pl.String).alias("clip")
    tp = [(pl.col("matched") & (pl.col("iou32") >= np.float32(t))).alias(f"tp_{threshold_label(t)}")
          for t in thresholds]
    preds = base.filter(pl.col("kind") != KIND_FN).sort("clip_idx", "det").select(
        clip, "frame", pl.col("det").alias("det_id"), "class_id", "score",
        pl.when("matched").then(pl.col("gt")).alias("gt_ann"),
        pl.col("iou32").cast(pl.Float64).alias("iou"), pl.col("best").alias("best_iou"),
        pl.when(pl.col("pearson").is_nan()).then(None).otherwise(pl.col("pearson")).alias("pearson"),
        *tp)
    gts = base.filter(pl.col("kind") != 1).sort("clip_idx", "gt").select(
        clip, "frame", pl.col("gt").alias("ann_id"), "class_id", pl.col("gt_best").alias("best_iou"),
        pl.when("matched").then(pl.col("det")).alias("det_id"), pl.col("iou32").cast(pl.Float64).alias("iou"))
    return preds, gts


def recall_ceiling(records, ious=CEILING_IOUS) -> dict:
    """Fraction of GT whose best same-class prediction in its frame reaches each soft IoU."""
    kind = records["kind"]
    is_gt = kind != 1
    best = records["gt_best"][is_gt]
    cls = records["cls"][is_gt]
    labels = [threshold_label(t) for t in ious]

    def frac(sel):
        n = int(np.count_nonzero(sel))
        return {lab: (float(np.count_nonzero(best[sel] >= np.float32(t)) / n) if n else math.nan)
                for lab, t in zip(labels, ious)}

    return {
        "ious": list(ious),
        "n_gt": int(best.size),
        "overall": frac(np.ones(best.size, dtype=bool)),
        "per_class": {CLASS_NAMES[c]: {"n_gt": int(np.count_nonzero(cls == c)), **frac(cls == c)}
                      for c in range(N_CLASSES)},
    }


# ---------------------------------------------------------------------------------------------
# public entry points


def score(pred, gt, protocol: str = "dcase2026", iou_thresholds=None, engine: str = "fast", jobs: int = 1,
          cache_dir: str | os.PathLike | None = None, backend: str = "loky", scheduler: str | None = None,
          sigma: float = 6.0, energy_thr: float = 0.10, with_matches: bool = False) -> ScoreResult:
    """Score predictions against ground truth with an official protocol.

    pred, gt: folders (official file rules) or {clip: [Annotation]}. iou_thresholds: a list or a
    spec string ("0.25,0.5", "0.5:0.05:0.95"); None gives the protocol default (dcase2026 only;
    the coco protocol has pycocotools' fixed 0.50:0.05:0.95). engine "reference" follows the
    official algorithm literally (slow); "fast" gives the same numbers. jobs > 1 scores clips in
    parallel with joblib (backend loky / threading, or dask with a scheduler address).
    """
    check_protocol(protocol)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    plan, skipped, gt_only = _plan(pred, gt, protocol)
    clips = [c for c, _, _ in plan]
    details = {"clips": clips, "gt_without_predictions": gt_only}
    if protocol == "dcase2026":
        if iou_thresholds is None or isinstance(iou_thresholds, str):
            thresholds = parse_thresholds(iou_thresholds, protocol)
        else:
            thresholds = [float(t) for t in iou_thresholds]
            parse_thresholds(",".join(repr(t) for t in thresholds), protocol)  # validates
        records = _score_dcase(plan, thresholds, engine, jobs, cache_dir, backend, scheduler)
        metrics = metrics_from_records(records, thresholds)
        matches = gt_matches = None
        if with_matches:
            matches, gt_matches = _match_tables(records, clips, thresholds)
        return ScoreResult(protocol, metrics, matches, gt_matches, recall_ceiling(records), skipped, details,
                           records)
    if iou_thresholds not in (None, ""):
        raise ValueError("the dcase2026-coco protocol uses pycocotools' fixed IoU thresholds 0.50:0.05:0.95; "
                         "drop --iou-thresholds")
    from calib.score.coco import score_coco_plan

    metrics, extra = score_coco_plan(plan, sigma=sigma, energy_thr=energy_thr, engine=engine, jobs=jobs,
                                     cache_dir=cache_dir, parallel=lambda fn, items: _parallel_map(
                                         fn, items, jobs, backend, scheduler))
    details.update(extra)
    return ScoreResult(protocol, metrics, None, None, {}, skipped, details)


def table_annotations(df: pl.DataFrame, kind: str, where: str) -> dict[str, list[Annotation]]:
    """calib detections / truth rows -> {clip: [Annotation]} (polygons sliced from one flat
    array through the list offsets; no per-point Python work)."""
    id_col = "det_id" if kind == "pred" else "ann_id"
    need = ["clip", "frame", id_col, "class_id", "points"] + (["score"] if kind == "pred" else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ScoreInputError(f"{where}: missing column(s) {missing}")
    df = df.select(need + [c for c in ("distance",) if c in df.columns])
    n = df.height
    pts = df.get_column("points").rechunk().to_arrow()
    if hasattr(pts, "combine_chunks"):
        pts = pts.combine_chunks()
    poly_off = np.asarray(pts.offsets, dtype=np.int64)  # per row: polygon range
    inner = pts.values
    point_off = np.asarray(inner.offsets, dtype=np.int64)  # per polygon: point range
    structs = inner.values
    xyz = np.column_stack([np.asarray(structs.field(f).to_numpy(zero_copy_only=False), dtype=np.float64)
                           for f in ("x", "y", "e")]) if len(structs) else np.zeros((0, 3))
    # offsets may not start at 0 for sliced arrays: index through them as they are
    frames = df.get_column("frame").to_numpy()
    classes = df.get_column("class_id").to_numpy()
    ids = df.get_column(id_col).to_numpy()
    clips = df.get_column("clip").to_list()
    scores = df.get_column("score").to_numpy().astype(np.float64) if kind == "pred" else np.full(n, np.nan)
    dist = df.get_column("distance").to_numpy().astype(np.float64) if "distance" in df.columns else np.full(n, np.nan)
    if kind == "pred":
        bad = np.flatnonzero(~np.isfinite(scores))
        if bad.size:
            i = bad[0]
            raise ScoreInputError(f"{where}: clip {clips[i]} {id_col} {ids[i]}: score must be a finite number, got {scores[i]!r}")
    x, y, e = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    bad_pt = ~((x >= 0) & (x <= 360) & (y >= 0) & (y <= 180) & np.isfinite(e))
    if bad_pt.any():
        p = int(np.flatnonzero(bad_pt)[0])
        poly = int(np.searchsorted(point_off, p, side="right") - 1)
        row = int(np.searchsorted(poly_off, poly, side="right") - 1)
        raise ScoreInputError(f"{where}: clip {clips[row]} {id_col} {ids[row]}: polygon {poly - poly_off[row]}: "
                              f"point {p - point_off[poly]} ({x[p]}, {y[p]}, {e[p]}) outside x in [0, 360], "
                              "y in [0, 180] or not finite")
    valid = pts.is_valid().to_numpy(zero_copy_only=False) if pts.null_count else np.ones(n, dtype=bool)
    out: dict[str, list[Annotation]] = {}
    for i in range(n):
        polys = []
        if valid[i]:
            for k in range(poly_off[i], poly_off[i + 1]):
                a, b = point_off[k], point_off[k + 1]
                if b > a:
                    polys.append(xyz[a:b])
        d = dist[i]
        out.setdefault(clips[i], []).append(Annotation(
            frame=int(frames[i]), class_id=int(classes[i]), score=float(scores[i]), polygons=tuple(polys),
            distance=None if np.isnan(d) else float(d), index=int(ids[i])))
    # file order: annotations sorted by their index within each clip
    return {c: sorted(v, key=lambda a: a.index) for c, v in out.items()}


def score_tables(dets: pl.DataFrame, truth: pl.DataFrame, **kwargs) -> ScoreResult:
    """Score calib tables (DETECTIONS / TRUTH schemas) as if they were the JSON files they
    describe: det_id / ann_id give the file order. ``dets`` must hold one system."""
    if "system" in dets.columns:
        systems = dets.get_column("system").unique().to_list()
        if len(systems) > 1:
            raise ScoreInputError(f"detections hold {len(systems)} systems ({', '.join(map(str, sorted(systems, key=str))[:5])}"
                                  f"{', ...' if len(systems) > 5 else ''}); filter one system first, e.g. "
                                  "dets.filter(pl.col('system') == NAME)")
    return score(table_annotations(dets, "pred", "detections"), table_annotations(truth, "gt", "truth"), **kwargs)
