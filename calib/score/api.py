"""Scoring calib tables and folders: the entry points the other stages and the CLI call.

``score(pred, gt)`` takes ``{clip: [Annotation]}`` mappings (from :func:`calib.score.annotations.load_dir`
or :func:`annotations_from_table`), runs the chosen engine per clip (in parallel with joblib for
the fast one) and aggregates exactly as the official script. The result is the official metrics
dict itself (so ``result["macro_mAP"]`` works) with the match table and the recall ceiling as
attributes.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import polars as pl

from calib.score.aggregate import concat_records, metrics_from_records
from calib.score.annotations import N_CLASSES, Annotation, check_protocol
from calib.score.matching import KIND_FN, KIND_MATCHED

DEFAULT_THRESHOLDS = (0.25, 0.5, 0.75)
CEILING_LEVELS = (0.1, 0.25, 0.5)


class ScoreResult(dict):
    """The official metrics (a dict with the script's keys) plus what calib adds:

    ``matches``: one row per prediction record (polars DataFrame) or None; ``gt_matches``: one row per
    GT annotation with its best same-class prediction IoU; ``recall_ceiling``: fraction of GT whose
    best same-class prediction of its frame reaches each soft IoU level whatever the scores;
    ``skipped``: prediction clips without ground truth; ``unscored_gt``: GT clips of a folder
    without a prediction file, not scored (as the official scripts do); ``tie_order_range``
    (dcase2026): macro and micro mAP under each tie order and their [min, max]
    (:func:`calib.score.aggregate.tie_order_range`; metrics.json carries it under that key)."""

    matches: pl.DataFrame | None = None
    gt_matches: pl.DataFrame | None = None
    recall_ceiling: dict | None = None
    skipped: list[str]
    unscored_gt: list[str] = []
    details: dict | None = None  # coco protocol: n_distance_pairs, pairs (the peak-matched pairs, a DataFrame)
    tie_order_range: dict | None = None

    @property
    def metrics(self) -> dict:
        return dict(self)


def parse_thresholds(spec: str | Sequence[float] | None, protocol: str = "dcase2026") -> list[float] | None:
    """``"0.25,0.5"`` or ``"0.5:0.05:0.95"`` (start:step:end, end included) or a list -> floats."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        return [float(v) for v in spec]
    spec = spec.strip()
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"IoU thresholds {spec!r}: expected start:step:end")
        start, step, end = (float(p) for p in parts)
        if step <= 0 or end < start:
            raise ValueError(f"IoU thresholds {spec!r}: need step > 0 and end >= start")
        n = int(math.floor((end - start) / step + 1e-9)) + 1
        # rounded so 0.5:0.05:0.95 gives 0.9, not 0.8999999999999999 (as the official script prints)
        return [round(float(v), 10) for v in np.linspace(start, start + step * (n - 1), n)]
    vals = [float(v) for v in spec.replace(" ", "").split(",") if v]
    if not vals or any(not (0 < v <= 1) for v in vals):
        raise ValueError(f"IoU thresholds {spec!r}: expected numbers in (0, 1]")
    return vals


# ----------------------------------------------------------------------------------------------
# tables -> annotations
def annotations_from_table(df: pl.DataFrame, kind: str = "pred") -> dict[str, list[Annotation]]:
    """{clip: annotations} of a detections (kind="pred") or truth (kind="gt") table, classes 0..12.

    Points are flattened once with Arrow offsets; each polygon is a view into one float64 block."""
    if df.height == 0:
        return {}
    id_col = "det_id" if kind == "pred" else "ann_id"
    df = df.filter((pl.col("class_id") >= 0) & (pl.col("class_id") < N_CLASSES))
    df = df.sort(["clip", id_col], maintain_order=True)
    pts = df.get_column("points").to_arrow()
    pts = pts.combine_chunks() if hasattr(pts, "combine_chunks") else pts
    ann_off = pts.offsets.to_numpy(zero_copy_only=False)
    polys = pts.values
    poly_off = polys.offsets.to_numpy(zero_copy_only=False)
    leaf = polys.values
    xyz = np.column_stack([leaf.field(c).to_numpy(zero_copy_only=False) for c in ("x", "y", "e")]) \
        if len(leaf) else np.zeros((0, 3))
    clips = df.get_column("clip").to_list()
    frames = df.get_column("frame").to_list()
    classes = df.get_column("class_id").to_list()
    ids = df.get_column(id_col).to_list()
    scores = df.get_column("score").to_list() if kind == "pred" else [math.nan] * df.height
    dist = df.get_column("distance").to_list()
    _check_table(xyz, ann_off, poly_off, scores if kind == "pred" else None, clips, ids, id_col)
    out: dict[str, list[Annotation]] = {}
    for i in range(df.height):
        polygons = tuple(xyz[poly_off[j]: poly_off[j + 1]] for j in range(ann_off[i], ann_off[i + 1]))
        out.setdefault(clips[i], []).append(Annotation(frame=int(frames[i]), class_id=int(classes[i]),
                                                        score=float(scores[i]), polygons=polygons,
                                                        distance=dist[i], index=int(ids[i])))
    return out


def _check_table(xyz, ann_off, poly_off, scores, clips, ids, id_col) -> None:
    """The JSON files' rules (:mod:`calib.io.validate`) on table rows: finite scores, points on the
    canvas; the error names the clip, the row's id and the point."""
    from calib.io.errors import InputError
    from calib.io.validate import points_outside_canvas, scores_not_finite

    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64)
        bad = np.flatnonzero(scores_not_finite(sc))
        if bad.size:
            i = int(bad[0])
            raise InputError(f"clip {clips[i]}", f"{id_col} {ids[i]}: score must be a finite number, got {sc[i]!r}")
    bad = np.flatnonzero(points_outside_canvas(xyz))
    if bad.size and len(ann_off):  # only points the rows refer to (Arrow children may hold more)
        lo, hi = poly_off[ann_off[0]], poly_off[ann_off[-1]]
        bad = bad[(bad >= lo) & (bad < hi)]
    if bad.size:
        p = int(bad[0])
        x, y, e = xyz[p]
        poly = int(np.searchsorted(poly_off, p, side="right") - 1)
        row = int(np.searchsorted(ann_off, poly, side="right") - 1)
        raise InputError(f"clip {clips[row]}", f"{id_col} {ids[row]}: polygon {poly - ann_off[row]}: triplet "
                         f"{p - poly_off[poly]} = ({x}, {y}, {e}) has x outside [0, 360], y outside [0, 180] "
                         "or a non-finite intensity")


def annotations_digest(anns: Sequence[Annotation]) -> str:
    """Content hash of a clip's annotations (the GT cache key for in-memory annotations)."""
    from calib.score.cache import annotations_digest as digest

    return digest(anns)


# ----------------------------------------------------------------------------------------------
# engines
_BLAS = None  # this process's threadpoolctl controller: finding the libraries takes milliseconds


def _one_blas_thread(fn, *args):
    """Run fn with one BLAS thread (see calib/__init__.py: scipy's tiny LAPACK calls)."""
    global _BLAS
    if _BLAS is None:
        import scipy.interpolate  # noqa: F401  (load scipy's BLAS before the controller lists them)
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    with _BLAS.limit(limits=1, user_api="blas"):
        return fn(*args)


def parallel_map(fn, items, *, jobs: int = 1, backend: str = "loky", scheduler: str | None = None) -> list:
    """[fn(*item) for item in items], in order, over joblib workers when jobs != 1 (loky processes,
    threads) or on a Dask cluster (backend "dask": the scheduler at ``scheduler``, or a local
    in-process cluster when None)."""
    items = list(items)
    if backend not in ("loky", "threading", "dask"):
        raise ValueError(f"backend must be loky, threading or dask, got {backend!r}")
    if (jobs == 1 and backend != "dask") or not items:
        return [_one_blas_thread(fn, *it) for it in items]
    from joblib import Parallel, delayed, parallel_config

    calls = (delayed(_one_blas_thread)(fn, *it) for it in items)
    if backend == "dask":
        from distributed import Client

        client = Client(scheduler) if scheduler else Client(processes=False, dashboard_address=None)
        try:
            with parallel_config(backend="dask"):
                return Parallel()(calls)
        finally:
            client.close()
    with parallel_config(backend=backend, n_jobs=jobs):
        return Parallel()(calls)


class _Source:
    """One side of one clip: annotations in hand, or a file read when needed (in a worker for
    predictions, only on a cache miss for GT). ``digest`` is the content hash: of the file's
    bytes, or of the annotations."""

    __slots__ = ("anns", "path", "kind", "protocol", "_digest")

    def __init__(self, anns=None, path=None, kind="pred", protocol="dcase2026"):
        self.anns, self.path, self.kind, self.protocol, self._digest = anns, path, kind, protocol, None

    def load(self) -> list[Annotation]:
        if self.anns is None:
            from calib.score.annotations import load_file

            return load_file(self.path, self.kind, self.protocol)
        return self.anns

    def digest(self, cache_dir=None) -> str:
        if self._digest is None:
            if self.anns is None:
                from calib.score.annotations import read_bytes
                from calib.score.cache import GT_CACHE

                self._digest = "file-" + GT_CACHE.file_digest(
                    self.path, lambda: read_bytes(self.path, self.kind, self.protocol), cache_dir)
            else:
                self._digest = annotations_digest(self.anns)
        return self._digest


def _plan(pred, gt, protocol, clips):
    """(clips, pred sources, gt sources, skipped, unscored GT clips) for mappings or folders."""
    if isinstance(pred, (str, os.PathLike)) and isinstance(gt, (str, os.PathLike)):
        from calib.io.discover import pair_files

        files = pair_files(pred, gt, protocol)
        found = {c: (pf, gf) for c, pf, gf in files.pairs}
        order = [c for c, _, _ in files.pairs] if clips is None else [c for c in clips if c in found]
        return (order, [_Source(path=found[c][0], kind="pred", protocol=protocol) for c in order],
                [_Source(path=found[c][1], kind="gt", protocol=protocol) for c in order], files.skipped,
                files.gt_only)
    if isinstance(pred, (str, os.PathLike)) or isinstance(gt, (str, os.PathLike)):
        from calib.score.annotations import load_dir

        pred = load_dir(pred, "pred", protocol) if isinstance(pred, (str, os.PathLike)) else pred
        gt = load_dir(gt, "gt", protocol) if isinstance(gt, (str, os.PathLike)) else gt
    skipped = sorted(set(pred) - set(gt))
    if clips is None:
        clips = sorted(gt, key=lambda c: c + ".json")
    return (list(clips), [_Source(anns=list(pred.get(c, []))) for c in clips],
            [_Source(anns=list(gt[c]), kind="gt") for c in clips], skipped, [])


def score(pred, gt, *, protocol: str = "dcase2026", iou_thresholds=None, engine: str = "fast", jobs: int = 1,
          cache_dir=None, backend: str = "loky", scheduler: str | None = None, sigma: float = 6.0,
          energy_thr: float = 0.10, with_matches: bool = True, clips: Sequence[str] | None = None,
          system: str = "", tie_order: str = "avx2") -> ScoreResult:
    """Score predictions against ground truth.

    ``pred`` / ``gt``: ``{clip: [Annotation]}`` mappings, or folders read with the protocol's file
    rules (then GT maps are cached under the hash of each GT file's bytes and a cached GT file is
    not parsed again; prediction files are parsed in the workers).
    ``clips``: the clips to score, in scoring order (default for mappings: every clip with ground
    truth, sorted as the official script sorts ``<clip>.json`` files, a GT clip without predictions
    scoring as an empty prediction file; for folders: the prediction files that have GT, as the
    official script does). Prediction clips without GT are skipped and listed in ``.skipped``.
    ``iou_thresholds``: a list, or a spec string ("0.25,0.5", "0.5:0.05:0.95"); default per protocol.
    ``engine``: "fast" (cached GT maps, bounding-box interpolation, vectorized IoU, clips in
    parallel over ``jobs`` joblib workers or a Dask cluster) or "reference" (the official algorithm
    step by step, one process, nothing cached).
    ``tie_order`` (dcase2026): how ``numpy.argsort`` orders tied scores, which the CPU decides:
    "avx2" (default: the official machine's, so the official numbers on any CPU), "avx512" (the
    official script run on an AVX-512 machine) or "stable". The result's ``tie_order_range`` gives
    macro_mAP and micro_mAP under all three and their [min, max] (only classes whose tied scores
    differ in outcome are sorted again). The dcase2026-coco protocol sorts stably (pycocotools'
    mergesort), so there the CPU never matters and ``tie_order`` changes nothing."""
    check_protocol(protocol)
    from calib.score.argsort import check_tie_order

    check_tie_order(tie_order)
    if engine not in ("fast", "reference"):
        raise ValueError(f"engine must be 'fast' or 'reference', got {engine!r}")
    if engine == "reference" and (jobs != 1 or backend == "dask"):
        raise ValueError("the reference engine runs in one process (it is the oracle); use --engine fast")
    if isinstance(iou_thresholds, str):
        iou_thresholds = parse_thresholds(iou_thresholds)
    clips, psrc, gsrc, skipped, unscored_gt = _plan(pred, gt, protocol, clips)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # see calib/__init__.py: tiny LAPACK calls
        if protocol == "dcase2026-coco":
            from calib.score.coco import score_coco

            if iou_thresholds is not None:
                raise ValueError("the dcase2026-coco protocol uses pycocotools' fixed IoU thresholds 0.50:0.05:0.95")
            metrics, details = score_coco(list(zip(clips, psrc, gsrc)), sigma=sigma, energy_thr=energy_thr,
                                          engine=engine, jobs=jobs, cache_dir=cache_dir, backend=backend,
                                          scheduler=scheduler)
            res = ScoreResult(metrics)
            res.skipped = skipped
            res.details = details
        else:
            thresholds = list(iou_thresholds) if iou_thresholds is not None else list(DEFAULT_THRESHOLDS)
            res = _score_dcase2026(clips, psrc, gsrc, thresholds, skipped, engine=engine, jobs=jobs,
                                   cache_dir=cache_dir, backend=backend, scheduler=scheduler,
                                   with_matches=with_matches, system=system, tie_order=tie_order)
        res.unscored_gt = unscored_gt
        return res


def _reference_job(clip, psrc, gsrc):
    from calib.score.reference import score_clip_reference

    return score_clip_reference(clip, psrc.load(), gsrc.load()).arrays()


def _fast_job(clip, psrc, maps, gsrc):
    """Records of one clip, and its GT maps when rows had to be rendered here (for the parent to
    cache; None when the cached maps held every row this clip's predictions need). One job per
    clip renders and scores, so maps are not sent back and forth between two rounds of jobs."""
    from calib.score.fast import render_gt_maps, rows_with_predictions, score_clip_fast  # per call: tests patch it

    preds = psrc.load()
    gts = rendered = None
    if maps is None:  # first sight of this GT: its rows, none rendered yet
        gts = gsrc.load()
        maps = rendered = render_gt_maps(gts, np.zeros(len(gts), dtype=bool))
    need = rows_with_predictions(maps.frame, maps.cls, preds) & ~maps.done
    if need.any():
        maps = rendered = render_gt_maps(gsrc.load() if gts is None else gts, need, maps)
    return score_clip_fast(clip, preds, maps).arrays(), rendered


def _work_estimate(src) -> int:
    """Rough size of a source's work: its file's bytes, or its points (about as many bytes each
    as a JSON triplet takes)."""
    if src.path is not None:
        try:
            return os.stat(src.path).st_size
        except OSError:
            return 0
    return 30 * sum(len(p) for a in src.anns for p in a.polygons)


def largest_first(costs: Sequence[int]) -> list[int]:
    """Job order for a pool: biggest first (stable), so a big clip does not start last and keep
    one worker busy while the others idle."""
    return sorted(range(len(costs)), key=lambda i: -costs[i])


def _fast_records(clips, psrc, gsrc, cache_dir, par) -> list[dict]:
    """Records of every clip with the fast engine: cached GT maps where there are, the others
    rendered in the clip's own job and cached here."""
    from calib.score.cache import GT_CACHE, entry_key
    from calib.score.gt_maps import GTMaps

    keys = [entry_key("dcase2026", g.digest(cache_dir)) for g in gsrc]
    GT_CACHE.save_digests(cache_dir)
    maps = [GT_CACHE.get(k, cache_dir, GTMaps) for k in keys]
    costs = [_work_estimate(p) + (_work_estimate(g) if m is None else 0) for p, g, m in zip(psrc, gsrc, maps)]
    order = largest_first(costs) if par["jobs"] != 1 else list(range(len(clips)))
    done = parallel_map(_fast_job, [(clips[i], psrc[i], maps[i], gsrc[i]) for i in order], **par)
    recs: list = [None] * len(clips)
    for i, (rec, rendered) in zip(order, done):
        recs[i] = rec
        if rendered is not None:
            GT_CACHE.put(keys[i], rendered, cache_dir)
    return recs


def _score_dcase2026(clips, psrc, gsrc, thresholds, skipped, *, engine, jobs, cache_dir, backend, scheduler,
                     with_matches, system, tie_order="avx2") -> ScoreResult:
    par = {"jobs": jobs, "backend": backend, "scheduler": scheduler}
    if engine == "reference":
        recs = [_reference_job(c, p, g) for c, p, g in zip(clips, psrc, gsrc)]
    else:
        recs = _fast_records(clips, psrc, gsrc, cache_dir, par)
    records = concat_records(recs)
    metrics = metrics_from_records(records, thresholds, tie_order, with_tie_range=True)
    tie_range = metrics.pop("tie_order_range")  # calib's own: the dict keeps the official keys only
    res = ScoreResult(metrics)
    res.tie_order_range = tie_range
    res.skipped = skipped
    if with_matches:
        clip_col = np.concatenate([np.full(len(r["kind"]), c, dtype=object) for c, r in zip(clips, recs)]) \
            if recs else np.zeros(0, dtype=object)
        res.matches, res.gt_matches = match_tables(records, clip_col, thresholds, system)
        res.recall_ceiling = recall_ceiling(res.gt_matches)
    return res


def match_tables(records: dict, clip_col: np.ndarray, thresholds: Sequence[float], system: str = ""):
    """(prediction-side, GT-side) match tables from the official records."""
    kind = records["kind"]
    det = kind != KIND_FN
    iou = records["iou"]
    preds = pl.DataFrame({
        "system": pl.Series([system] * int(det.sum()), dtype=pl.String),
        "clip": pl.Series(clip_col[det].tolist(), dtype=pl.String),
        "frame": records["frame"][det],
        "det_id": records["det"][det],
        "class_id": records["cls"][det],
        "score": records["score"][det],
        "gt_ann_id": pl.Series(np.where(kind[det] == KIND_MATCHED, records["gt"][det], -1)).replace(-1, None),
        "iou": iou[det].astype(np.float64),
        "best_iou": records["best"][det].astype(np.float64),
        "pearson": pl.Series(records["pearson"][det]).fill_nan(None),
    } | {f"tp_{t:g}": (kind[det] == KIND_MATCHED) & (iou[det] >= np.float32(t)) for t in thresholds})
    g = (kind == KIND_MATCHED) | (kind == KIND_FN)
    gts = pl.DataFrame({
        "clip": pl.Series(clip_col[g].tolist(), dtype=pl.String),
        "frame": records["frame"][g],
        "ann_id": records["gt"][g],
        "class_id": records["cls"][g],
        "matched": kind[g] == KIND_MATCHED,
        "best_iou": np.where(kind[g] == KIND_MATCHED, records["gt_best"][g], records["best"][g]).astype(np.float64),
    })
    return preds, gts


def recall_ceiling(gt_matches: pl.DataFrame, levels: Sequence[float] = CEILING_LEVELS) -> dict:
    """Fraction of GT whose best same-class prediction in its frame reaches each soft-IoU level,
    overall and per class: how much any reranker could gain at most."""
    n = gt_matches.height
    best = gt_matches.get_column("best_iou").cast(pl.Float32)
    out = {"n_gt": n, "overall": {f"{lv:g}": (float((best >= np.float32(lv)).sum()) / n if n else math.nan)
                                  for lv in levels}}
    per = {}
    for (c,), part in gt_matches.group_by(["class_id"], maintain_order=False):
        b = part.get_column("best_iou").cast(pl.Float32)
        per[int(c)] = {f"{lv:g}": float((b >= np.float32(lv)).sum()) / part.height for lv in levels}
    out["per_class"] = dict(sorted(per.items()))
    return out


def score_tables(detections: pl.DataFrame, truth: pl.DataFrame, **kwargs) -> ScoreResult:
    """Score a detections table (one system) against a truth table; kwargs as :func:`score`."""
    systems = detections.get_column("system").unique().to_list() if "system" in detections.columns else []
    if len(systems) > 1:
        raise ValueError(f"detections hold several systems {sorted(systems)}; filter one system before scoring")
    kwargs.setdefault("system", systems[0] if systems else "")
    return score(annotations_from_table(detections, "pred"), annotations_from_table(truth, "gt"), **kwargs)
