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
from typing import Iterable, Sequence

import numpy as np
import polars as pl

from calib.constants import DEFAULT_THRESHOLDS
from calib.score.aggregate import concat_records, metrics_from_records
from calib.score.annotations import Annotation, check_protocol
from calib.score.matching import KIND_FN, KIND_MATCHED
from calib.score.parallel import check_backend, gil_free_map, largest_first, parallel_map, resolve, use_pool
from calib.score.result import ScoreResult
from calib.score.thresholds import parse_thresholds

CEILING_LEVELS = (0.1, 0.25, 0.5)


# ----------------------------------------------------------------------------------------------
# tables -> annotations
def annotations_from_table(df: pl.DataFrame, kind: str = "pred") -> dict[str, list[Annotation]]:
    """{clip: annotations} of a detections (kind="pred") or truth (kind="gt") table, classes 0..12
    (:func:`calib.score.columns.clips_from_table`, as objects)."""
    from calib.score.columns import clips_from_table

    return {clip: cols.to_annotations() for clip, cols in clips_from_table(df, kind).items()}


def annotations_digest(anns: Sequence[Annotation]) -> str:
    """Content hash of a clip's annotations (the GT cache key for in-memory annotations)."""
    from calib.score.cache import annotations_digest as digest

    return digest(anns)


# ----------------------------------------------------------------------------------------------
# engines
class _Source:
    """One side of one clip: annotations in hand (objects, or columns: a
    :class:`~calib.score.columns.ClipAnnotations` or a table's :class:`~calib.score.columns.TableClip`),
    or a file read when needed (in a worker for predictions, only on a cache miss for GT).
    ``digest`` is the content hash: of the file's bytes, or of the annotations."""

    __slots__ = ("anns", "cols", "path", "kind", "protocol", "_digest")

    def __init__(self, anns=None, path=None, kind="pred", protocol="dcase2026"):
        self.cols = anns if hasattr(anns, "columns") else None
        self.anns = None if self.cols is not None else anns
        self.path, self.kind, self.protocol, self._digest = path, kind, protocol, None

    def load(self) -> list[Annotation]:
        """The annotations as objects (the reference engine, GT rendering, the coco protocol)."""
        if self.anns is None:
            if self.cols is not None:
                return self.cols.columns().to_annotations()
            from calib.score.annotations import load_file

            return load_file(self.path, self.kind, self.protocol)
        return self.anns

    def columns(self):
        """(ClipAnnotations, digest of the file's bytes or None): the fast dcase2026 engine's view."""
        from calib.score.columns import ClipAnnotations, load_file_columns

        if self.cols is None and self.anns is not None:
            self.cols = ClipAnnotations.from_annotations(self.anns)
        if self.cols is not None:
            return self.cols.columns(), None
        return load_file_columns(self.path, self.kind, self.protocol)

    def digest(self, cache_dir=None) -> str:
        if self._digest is None:
            if self.path is not None:
                from calib.score.annotations import read_bytes
                from calib.score.cache import GT_CACHE

                self._digest = "file-" + GT_CACHE.file_digest(
                    self.path, lambda: read_bytes(self.path, self.kind, self.protocol), cache_dir)
            elif self.cols is not None:
                self._digest = self.cols.digest()
            else:
                self._digest = annotations_digest(self.anns)
        return self._digest

    def work(self) -> int:
        """Bytes of the file, or points of the annotations (about as many bytes each as a JSON
        triplet takes, times 30): a rough size of the work this side brings."""
        if self.path is not None:
            try:
                return os.stat(self.path).st_size
            except OSError:
                return 0
        if self.cols is not None:
            return 30 * self.cols.n_points_total()
        return 30 * sum(len(p) for a in self.anns for p in a.polygons)


def _plan(pred, gt, protocol, clips):
    """(clips, pred sources, gt sources, skipped, unscored GT clips) for mappings or folders.
    Mapping values: lists of annotations, or columns (:mod:`calib.score.columns`)."""
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

    def side(v):
        return v if hasattr(v, "columns") else list(v)

    return (list(clips), [_Source(anns=side(pred.get(c, []))) for c in clips],
            [_Source(anns=side(gt[c]), kind="gt") for c in clips], skipped, [])


def score(pred, gt, *, protocol: str = "dcase2026", iou_thresholds=None, engine: str = "fast",
          jobs: int | None = None, cache_dir=None, backend: str | None = None, scheduler: str | None = None,
          sigma: float = 6.0,
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
    ``engine``: "fast" (cached GT maps, each detection's IoUs and Pearson r against its bucket's GT
    cached by content so a subset or a re-scored copy of a scored table renders nothing,
    bounding-box interpolation, vectorized IoU, clips in parallel over ``jobs`` joblib workers or a
    Dask cluster when the estimated work can pay for a pool, see :mod:`calib.score.parallel`) or
    "reference" (the official algorithm step by step, one process, nothing cached).
    ``jobs``, ``backend``, ``scheduler``: as :func:`calib.score.parallel.parallel_map`; each left
    None takes the enclosing :func:`calib.score.parallel.scale_out` block's (``calib run --jobs 2``),
    else 1, "loky", None.
    ``cache_dir``: a folder keeping GT maps and prediction rows (``pred/``) across processes; by
    default the one a :func:`calib.score.cache.cache_folder` block sets, else memory only.
    ``tie_order`` (dcase2026): how ``numpy.argsort`` orders tied scores, which the CPU decides:
    "avx2" (default: the official machine's, so the official numbers on any CPU), "avx512" (the
    official script run on an AVX-512 machine) or "stable". The result's ``tie_order_range`` gives
    macro_mAP and micro_mAP under all three and their [min, max] (only classes whose tied scores
    differ in outcome are sorted again). The dcase2026-coco protocol sorts stably (pycocotools'
    mergesort), so there the CPU never matters and ``tie_order`` changes nothing."""
    check_protocol(protocol)
    from calib.score.argsort import check_tie_order
    from calib.score.cache import default_cache_dir

    if cache_dir is None:
        cache_dir = default_cache_dir()

    check_tie_order(tie_order)
    if engine not in ("fast", "reference"):
        raise ValueError(f"engine must be 'fast' or 'reference', got {engine!r}")
    if engine == "reference" and jobs is None and backend is None:
        jobs, backend, scheduler = 1, "loky", None  # the oracle: one process whatever the block says
    jobs, backend, scheduler = resolve(jobs, backend, scheduler)
    check_backend(backend)
    if engine == "reference" and (jobs != 1 or backend == "dask"):
        raise ValueError("the reference engine runs in one process (it is the oracle); use --engine fast")
    iou_thresholds = parse_thresholds(iou_thresholds, protocol)
    clips, psrc, gsrc, skipped, unscored_gt = _plan(pred, gt, protocol, clips)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # see calib/__init__.py: tiny LAPACK calls
        if protocol == "dcase2026-coco":
            from calib.score.coco import score_coco

            metrics, details = score_coco(list(zip(clips, psrc, gsrc)), map_fn=parallel_map, sigma=sigma,
                                          energy_thr=energy_thr, engine=engine, jobs=jobs, cache_dir=cache_dir,
                                          backend=backend, scheduler=scheduler)
            res = ScoreResult.of(metrics, protocol)
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


def _fast_job(clip, psrc, maps, gsrc, known, labels=False):
    """(records, rendered GT maps or None, prediction rows added or None, maps rendered) of one
    clip: the GT maps are returned when rows had to be rendered here, the prediction rows when some
    were computed (or a prediction file was fully covered for the first time), for the parent to
    cache. One job per clip renders and scores, so maps are not sent back and forth. With
    ``labels``: (det ids, best IoUs) (:func:`calib.score.fast.best_ious`) instead of records."""
    from calib.score import fast  # per call: tests patch it
    from calib.score.pred_cache import PredIoUs, merge

    preds, source = psrc.columns()
    gts = rendered = None
    if maps is None:  # first sight of this GT: its rows, none rendered yet
        gts, _ = gsrc.columns()
        maps = rendered = fast.render_gt_maps(gts, np.zeros(len(gts), dtype=bool))
    miss, unrendered = _rows_to_compute(preds, maps, known)
    if unrendered:  # then which of those GT rows meet a prediction
        gts = gsrc.columns()[0] if gts is None else gts
        need = fast.gt_rows_to_render(preds, maps, miss, gts)
        if need.any():
            maps = rendered = fast.render_gt_maps(gts, need, maps)
    entry, added, n_rendered = fast.update_rows(preds, maps, known, miss)
    if source is not None and (entry is None or source not in entry.sources):
        added = (added if added is not None else PredIoUs.empty()).with_source(source)
        entry = merge(entry, added)
    out = (preds.index, fast.best_ious(preds, maps, entry)) if labels else fast.clip_records(preds, maps, entry)
    return out, rendered, added, n_rendered


def _rows_to_compute(preds, maps, known) -> tuple[np.ndarray, bool]:
    """(the predictions whose rows are missing, whether one of them is in the bucket of a GT row not
    rendered yet): a clip job reads its GT annotations only in that case (or to render all of its
    GT, when none is cached)."""
    from calib.score import fast  # per call: tests patch it

    _, miss = fast.missing_rows(preds, maps, known)
    return miss, bool(fast.gt_rows_to_render(preds, maps, miss).any())


def _job_reads_gt(psrc, maps, known) -> bool:
    """Whether :func:`_fast_job` reads the clip's GT annotations: its GT maps are not cached, its
    predictions are a file (read in the job), or :func:`_rows_to_compute` says so (the job's own
    test, made here on the same arrays)."""
    return maps is None or psrc.path is not None or _rows_to_compute(psrc.columns()[0], maps, known)[1]


#: the estimate's cost model (seconds, same benchmark, "variants" and "pool" modes): parsing a
#: prediction file, per byte; looking a detection up and writing its records (the GT digest and
#: checks included); rendering a prediction and computing its row, per prediction and per point;
#: the predictions of a file or table not seen before, per byte of JSON (or 30 per point);
#: rendering GT not cached, per byte of its file (or 30 per point)
PARSE_S_PER_BYTE = 4e-8
LIGHT_S_PER_DET = 2e-5
RENDER_S_PER_DET = 3e-4
RENDER_S_PER_POINT = 2e-6
PRED_S_PER_BYTE = 8e-8
GT_S_PER_BYTE = 2e-7


def estimate_seconds(psrc, gsrc, maps, known, cache_dir=None) -> float:
    """Rough in-process seconds of one clip's job, to decide whether a pool can pay for itself.

    Predictions in hand are looked up now (their keys are kept for the job), so only their
    misses count as rendering; a prediction file counts as all misses unless the cached rows
    cover it (:attr:`PredIoUs.sources`); GT counts when its maps are not cached."""
    from calib.score.fast import missing_rows

    t = 0.0 if maps is not None else GT_S_PER_BYTE * gsrc.work()
    if psrc.path is not None:
        size = psrc.work()
        covered = known is not None and len(known.sources) and psrc.digest(cache_dir) in set(known.sources.tolist())
        return t + PARSE_S_PER_BYTE * size + (0.0 if covered else PRED_S_PER_BYTE * size)
    preds, _ = psrc.columns()
    if maps is None:
        return t + LIGHT_S_PER_DET * len(preds) + PRED_S_PER_BYTE * psrc.work()
    _, miss = missing_rows(preds, maps, known)
    n_pts = preds.n_points()[miss]
    return t + LIGHT_S_PER_DET * len(preds) + RENDER_S_PER_DET * n_pts.size + RENDER_S_PER_POINT * float(n_pts.sum())


#: clips hashed per thread at least before a second thread helps
DIGEST_CLIPS_PER_THREAD = 4


def _digests(sources: list[_Source], cache_dir, par: dict) -> list[str]:
    """Each source's content digest, over as many threads of this process as local ``jobs``
    (hashlib leaves the GIL while it hashes: a dev-test truth table's 2.4 GB of GT points take
    about 2.5 s on one core)."""
    return gil_free_map(lambda g: g.digest(cache_dir), sources, jobs=par["jobs"], backend=par["backend"],
                        min_per_thread=DIGEST_CLIPS_PER_THREAD)


def _fast_records(clips, psrc, gsrc, cache_dir, par, stats, labels: bool = False) -> list:
    """Records of every clip with the fast engine: cached GT maps and prediction rows where there
    are, the others computed in the clip's own job and cached here; in this process when the
    estimated work is too small for a pool to pay (:data:`calib.score.parallel.POOL_MIN_SECONDS`)."""
    from calib.score.cache import GT_CACHE, entry_key
    from calib.score.gt_maps import GTMaps
    from calib.score.pred_cache import PredIoUs, merge, pred_cache_dir, pred_entry_key

    digests = _digests(gsrc, cache_dir, par)
    keys = [entry_key("dcase2026", d) for d in digests]
    row_keys = [pred_entry_key(d) for d in digests]
    row_dir = pred_cache_dir(cache_dir)
    maps = [GT_CACHE.get(k, cache_dir, GTMaps) for k in keys]
    known = [GT_CACHE.get(k, row_dir, PredIoUs) for k in row_keys]
    may_pool = use_pool(len(clips), None, jobs=par["jobs"], backend=par["backend"])
    costs = [estimate_seconds(p, g, m, kn, cache_dir) for p, g, m, kn in zip(psrc, gsrc, maps, known)] if may_pool else []
    GT_CACHE.save_digests(cache_dir)  # GT (and, for the estimate, prediction) file digests learned
    pooled = may_pool and use_pool(len(clips), sum(costs), jobs=par["jobs"], backend=par["backend"], reuses_pool=True)
    order = largest_first(costs) if pooled else list(range(len(clips)))
    run = par if pooled else {**par, "jobs": 1, "backend": "loky"}
    # a worker is sent a clip's GT annotations only when its job reads them (a truth table's clip:
    # about a thousand points per frame, copied out, pickled and sent; scoring with cached GT maps,
    # as a re-run does, reads none)
    send = [gsrc[i] if not pooled or _job_reads_gt(psrc[i], maps[i], known[i]) else None for i in range(len(clips))]
    done = parallel_map(_fast_job, [(clips[i], psrc[i], maps[i], send[i], known[i], labels) for i in order], **run,
                        desc="labels" if labels else "scoring", unit="clip")
    recs: list = [None] * len(clips)
    stats.update(pool=pooled, estimated_seconds=round(sum(costs), 3) if costs else None, maps_rendered=0)
    for i, (rec, rendered, added, n_rendered) in zip(order, done):
        recs[i] = rec
        stats["maps_rendered"] += n_rendered
        if rendered is not None:
            GT_CACHE.put(keys[i], rendered, cache_dir)
        if added is not None:  # onto what the cache holds now (another clip may share this GT)
            base = GT_CACHE.get(row_keys[i], None, PredIoUs)
            GT_CACHE.put(row_keys[i], merge(base if base is not None else known[i], added), row_dir)
    return recs


def _score_dcase2026(clips, psrc, gsrc, thresholds, skipped, *, engine, jobs, cache_dir, backend, scheduler,
                     with_matches, system, tie_order="avx2") -> ScoreResult:
    par = {"jobs": jobs, "backend": backend, "scheduler": scheduler}
    stats: dict = {}
    if engine == "reference":
        recs = [_reference_job(c, p, g) for c, p, g in zip(clips, psrc, gsrc)]
    else:
        recs = _fast_records(clips, psrc, gsrc, cache_dir, par, stats)
    records = concat_records(recs)
    metrics = metrics_from_records(records, thresholds, tie_order, with_tie_range=True)
    tie_range = metrics.pop("tie_order_range")  # calib's own: the dict keeps the official keys only
    res = ScoreResult.of(metrics, "dcase2026")
    res.tie_order_range = tie_range
    res.skipped = skipped
    res.work = stats
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


def best_ious(detections: pl.DataFrame, truth: pl.DataFrame, *, jobs: int | None = None, cache_dir=None,
              backend: str | None = None, scheduler: str | None = None) -> np.ndarray:
    """Best soft IoU (dcase2026 protocol) of each detection, in row order, with a GT annotation of
    its clip, frame and class: the label a reranker learns and the matchability the fusion stages
    use, the ``best_iou`` of :func:`score`'s match table without the matching. 0 where its frame
    holds no GT of its class; NaN where its clip has no GT or its class is outside 0..12.

    Any number of systems at once (rows are cached by content, whatever system they come from).
    Read from the prediction rows cache and computed (and cached) where missing, so labelling a
    table scored before renders nothing; ``jobs``, ``cache_dir``, ``backend``, ``scheduler`` as
    :func:`score`."""
    from threadpoolctl import threadpool_limits

    from calib.score.cache import default_cache_dir
    from calib.score.columns import clips_from_table
    from calib.tables import restrict_clips

    out = np.full(detections.height, np.nan)
    if detections.height == 0 or truth.height == 0:
        return out
    rows = detections.select("clip", "frame", "class_id", "score", "distance", "points",
                             pl.int_range(pl.len(), dtype=pl.Int64).alias("det_id"))  # det_id: the row
    pred = clips_from_table(rows, "pred")
    gt = clips_from_table(restrict_clips(truth, pred), "gt")  # slices: the GT's points are not copied
    clips = [c for c in pred if c in gt]
    jobs, backend, scheduler = resolve(jobs, backend, scheduler)
    par = {"jobs": jobs, "backend": backend, "scheduler": scheduler}
    with threadpool_limits(limits=1, user_api="blas"):  # see calib/__init__.py: tiny LAPACK calls
        done = _fast_records(clips, [_Source(anns=pred[c]) for c in clips],
                             [_Source(anns=gt[c], kind="gt") for c in clips],
                             cache_dir if cache_dir is not None else default_cache_dir(), par, {}, labels=True)
    for index, best in done:
        out[index] = best
    return out


def _gt_rows_needed(gsrc, psrcs, maps) -> np.ndarray:
    """Bool per GT row of one clip: not in ``maps`` yet and needed, every such row when ``psrcs``
    is None, else the rows the predictions of ``psrcs`` need (:func:`calib.score.fast.gt_rows_to_render`,
    as scoring them renders)."""
    from calib.score import fast

    if psrcs is None:
        return ~maps.done
    gts, _ = gsrc.columns()
    need = np.zeros(len(gts), dtype=bool)
    for psrc in psrcs:
        preds, _ = psrc.columns()
        need |= fast.gt_rows_to_render(preds, maps, np.ones(len(preds), dtype=bool), gts)
    return need


def _gt_job(gsrc, psrcs, base):
    """The GT maps of one clip: the rows :func:`_gt_rows_needed` names rendered on top of ``base``;
    None when there was nothing to render."""
    from calib.score import fast

    gts, _ = gsrc.columns()
    maps = base if base is not None else fast.render_gt_maps(gts, np.zeros(len(gts), dtype=bool))
    need = _gt_rows_needed(gsrc, psrcs, maps)
    return fast.render_gt_maps(gts, need, maps) if need.any() else None


def prepare_gt(truth: pl.DataFrame, detections: Sequence[pl.DataFrame] | None = None, *, cache_dir=None,
               jobs: int | None = None, backend: str | None = None, scheduler: str | None = None) -> int:
    """Render the GT maps of a truth table's clips that the GT cache lacks (the clips in parallel
    as :func:`score` runs them) and cache them; returns the clips rendered. Without
    ``detections``, every map; with them (tables of predictions to be scored, or subsets of them
    later), the maps scoring them needs: GT in the bucket of a prediction whose box meets it (the
    others stay unrendered, as in :func:`score`, and are drawn if a later prediction meets them).

    Before many processes score or label the same clips (a portfolio's chains over workers), so
    that each does not render the same GT again: a map is the same whether it was rendered here
    or when a prediction first needed it."""
    from threadpoolctl import threadpool_limits

    from calib.score.cache import GT_CACHE, default_cache_dir, entry_key
    from calib.score.columns import clips_from_table
    from calib.score.gt_maps import GTMaps

    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    jobs, backend, scheduler = resolve(jobs, backend, scheduler)
    gt = clips_from_table(truth, "gt")
    clips = list(gt)
    srcs = [_Source(anns=gt[c], kind="gt") for c in clips]
    preds = None
    if detections is not None:
        by_table = [clips_from_table(d, "pred") for d in detections if d is not None and d.height]
        preds = [[_Source(anns=t[c]) for t in by_table if c in t] for c in clips]
    keys = [entry_key("dcase2026", g.digest(cache_dir)) for g in srcs]
    cached = [GT_CACHE.get(k, cache_dir, GTMaps) for k in keys]
    todo = [i for i, m in enumerate(cached) if m is None or not m.done.all()]
    if preds is not None:  # a clip without predictions needs no map, nor one whose maps hold what they need
        todo = [i for i in todo
                if preds[i] and (cached[i] is None or _gt_rows_needed(srcs[i], preds[i], cached[i]).any())]
    costs = [GT_S_PER_BYTE * srcs[i].work() for i in todo]
    pooled = use_pool(len(todo), sum(costs), jobs=jobs, backend=backend, reuses_pool=True)
    order = [todo[i] for i in largest_first(costs)] if pooled else todo
    run = {"jobs": jobs, "backend": backend, "scheduler": scheduler} if pooled else {"jobs": 1, "backend": "loky"}
    with threadpool_limits(limits=1, user_api="blas"):
        done = parallel_map(_gt_job, [(srcs[i], None if preds is None else preds[i], cached[i]) for i in order],
                            **run, desc="ground truth", unit="clip")
    rendered = 0
    for i, maps in zip(order, done):
        if maps is not None:
            GT_CACHE.put(keys[i], maps, cache_dir)
            rendered += 1
    return rendered


def score_tables(detections: pl.DataFrame, truth: pl.DataFrame, *, gt_clips: Iterable[str] | None = None,
                 **kwargs) -> ScoreResult:
    """Score a detections table (one system) against a truth table; kwargs as :func:`score`.
    ``gt_clips``: clips with a GT file beyond the truth rows' clips (a GT file with no annotation:
    the official script scores it, every prediction there a false positive)."""
    systems = detections.get_column("system").unique().to_list() if "system" in detections.columns else []
    if len(systems) > 1:
        raise ValueError(f"detections hold several systems {sorted(systems)}; filter one system before scoring")
    kwargs.setdefault("system", systems[0] if systems else "")
    from calib.score.columns import clips_from_table

    # column-wise, no object per row: the fast engine reads these; the others convert them
    gt: dict = clips_from_table(truth, "gt")
    if gt_clips is not None:
        gt = {c: [] for c in gt_clips if c not in gt} | gt
    return score(clips_from_table(detections, "pred"), gt, **kwargs)
