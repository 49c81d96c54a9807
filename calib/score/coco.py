"""The ``dcase2026-coco`` protocol (official revision of 2026-04-02).

Each annotation becomes an energy map on a 180 x 360 float32 canvas (a spherical Gaussian blob per
triplet) and a binary mask (energy >= energy_thr * peak); masks are scored by pycocotools'
segmentation evaluation, one COCO image per (clip, frame). Pearson r and distance MAPE come from
a per-frame Hungarian matching of the annotations' peak directions.
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation
from scipy.optimize import linear_sum_assignment

from calib.constants import N_CLASSES
from calib.score.cache import PackedArrays, pack_sparse
from calib.score.coco_render import COLS, ROWS, render_energies, render_energy_reference

MATCH_DEG = 20.0
NO_MATCH_COST = 1000.0
MIN_PEAK = 1e-9
MIN_RANGE = 1e-7
#: salts the GT cache keys of prepared coco clips: bump when the maps or the packing change
COCO_RENDER_VERSION = "spec-2"


def direction(x: float, y: float) -> tuple[float, float]:
    """(azimuth, elevation) in degrees of a canvas point, with the protocol's mapping."""
    return x - 180.0, 90.0 - y * 180.0 / 179.0


def peak_triplet(polygons) -> tuple[float, float, float] | None:
    """The first triplet with the largest intensity (None for an empty annotation)."""
    if not polygons:
        return None
    pts = np.concatenate([np.asarray(p, dtype=np.float64) for p in polygons])
    i = int(np.argmax(pts[:, 2]))
    return float(pts[i, 0]), float(pts[i, 1]), float(pts[i, 2])


def great_circle_deg(az1, el1, az2, el2) -> float:
    p1, p2 = math.radians(el1), math.radians(el2)
    dl = math.radians(az2 - az1)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


@dataclass
class CocoClip(PackedArrays):
    """The valid annotations of one clip, prepared: energies kept sparse (flat pixel, value)."""

    frame: np.ndarray  # int64
    cls: np.ndarray  # int64
    score: np.ndarray  # float64 (NaN for GT)
    index: np.ndarray  # int64
    distance: np.ndarray  # float64, NaN when absent
    peak_az: np.ndarray  # float64, degrees (NaN: no triplet)
    peak_el: np.ndarray
    peak: np.ndarray  # float64 map maximum
    off: np.ndarray  # int64, n + 1
    pix: np.ndarray  # uint16 flat pixel index of non-zero energy
    vals: np.ndarray  # float32

    FIELDS = ("frame", "cls", "score", "index", "distance", "peak_az", "peak_el", "peak", "off", "pix", "vals")

    def __len__(self) -> int:
        return int(self.frame.size)

    def energy(self, k: int) -> np.ndarray:
        out = np.zeros(ROWS * COLS, dtype=np.float32)
        a, b = self.off[k], self.off[k + 1]
        out[self.pix[a:b]] = self.vals[a:b]
        return out.reshape(ROWS, COLS)


def prepare_clip(anns, sigma: float, render_many) -> CocoClip:
    """Render every annotation (``render_many(list of polygon lists, sigma)`` yields the maps in
    order); those whose map peaks below 1e-9 are invalid and dropped."""
    anns = list(anns)
    keep, energies, peaks, dirs = [], [], [], []
    for a, energy in zip(anns, render_many([a.polygons for a in anns], sigma)):
        peak = float(energy.max())
        if not peak >= MIN_PEAK:
            continue
        pk = peak_triplet(a.polygons)
        keep.append(a)
        energies.append(energy.ravel())
        peaks.append(peak)
        dirs.append(direction(pk[0], pk[1]) if pk is not None else (math.nan, math.nan))
    off, pix, vals = pack_sparse(energies, np.float32)
    return CocoClip(
        frame=np.array([a.frame for a in keep], dtype=np.int64),
        cls=np.array([a.class_id for a in keep], dtype=np.int64),
        score=np.array([a.score for a in keep], dtype=np.float64),
        index=np.array([a.index for a in keep], dtype=np.int64),
        distance=np.array([math.nan if a.distance is None else a.distance for a in keep], dtype=np.float64),
        peak_az=np.array([d[0] for d in dirs], dtype=np.float64),
        peak_el=np.array([d[1] for d in dirs], dtype=np.float64),
        peak=np.array(peaks, dtype=np.float64),
        off=off,
        pix=pix,
        vals=vals,
    )


def render_one_by_one(polygon_lists, sigma: float):
    """The reference engine's renderer: :func:`render_energy_reference` of each annotation."""
    return (render_energy_reference(p, sigma) for p in polygon_lists)


def _rle(mask: np.ndarray):
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def mask_of(energy: np.ndarray, peak: float, energy_thr: float) -> np.ndarray:
    """Binary mask: energy >= energy_thr * peak, in float32 as ``emap >= thr * emap.max()``."""
    return energy >= np.float32(energy_thr) * np.float32(peak)


def _mask(clip: CocoClip, k: int, energy_thr: float) -> np.ndarray:
    return mask_of(clip.energy(k), clip.peak[k], energy_thr)


def image_ids(preds: list[CocoClip], gts: list[CocoClip]) -> dict[tuple[int, int], int]:
    """One COCO image per (clip position, frame) present on either side, numbered in order."""
    keys = set()
    for i, c in enumerate(preds):
        keys.update((i, int(f)) for f in c.frame)
    for i, c in enumerate(gts):
        keys.update((i, int(f)) for f in c.frame)
    return {key: n + 1 for n, key in enumerate(sorted(keys))}


def coco_map(preds: list[CocoClip], gts: list[CocoClip], energy_thr: float) -> tuple[float, float, dict[int, float]]:
    """pycocotools segmentation mAP: (mask_mAP, mask_AP50, {class: AP or NaN})."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = image_ids(preds, gts)
    images = [{"id": i, "height": ROWS, "width": COLS} for i in sorted(ids.values())]
    gt_anns = []
    for i, c in enumerate(gts):
        for k in range(len(c)):
            rle = _rle(_mask(c, k, energy_thr))
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": ids[(i, int(c.frame[k]))],
                            "category_id": int(c.cls[k]) + 1, "segmentation": rle,
                            "area": float(mask_utils.area(rle)), "bbox": list(mask_utils.toBbox(rle)),
                            "iscrowd": 0})
    results = []
    for i, c in enumerate(preds):
        for k in range(len(c)):
            results.append({"image_id": ids[(i, int(c.frame[k]))], "category_id": int(c.cls[k]) + 1,
                            "segmentation": _rle(_mask(c, k, energy_thr)), "score": float(c.score[k])})
    has_gt = {int(x) for c in gts for x in c.cls}
    if not results:
        return 0.0, 0.0, {c: (0.0 if c in has_gt else math.nan) for c in range(N_CLASSES)}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns,
                           "categories": [{"id": c + 1, "name": str(c)} for c in range(N_CLASSES)]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        p = prec[:, :, k, 0, -1]
        valid = p[p > -1]
        per_class[cat - 1] = float(np.mean(valid)) if valid.size else math.nan
    return float(ev.stats[0]), float(ev.stats[1]), per_class


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def pair_pearson(g_energy, g_mask, p_energy, p_mask) -> float:
    """np.corrcoef of two float32 energy maps over their masks' union dilated twice (3 x 3 cross),
    NaN unless both value ranges (float32 ptp) exceed 1e-7."""
    region = binary_dilation(g_mask | p_mask, structure=_CROSS, iterations=2)
    a = g_energy[region]
    b = p_energy[region]
    if a.size < 2 or not (np.ptp(a) > MIN_RANGE and np.ptp(b) > MIN_RANGE):
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])  # corrcoef works in float64


def match_frame(g_cls, g_az, g_el, p_cls, p_az, p_el) -> list[tuple[int, int]]:
    """Hungarian matching of peak directions within a frame: same class and <= 20 degrees."""
    cost = np.full((len(g_cls), len(p_cls)), NO_MATCH_COST)
    for i in range(len(g_cls)):
        for j in range(len(p_cls)):
            if g_cls[i] != p_cls[j]:
                continue
            d = great_circle_deg(g_az[i], g_el[i], p_az[j], p_el[j])
            if d <= MATCH_DEG:
                cost[i, j] = d
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if cost[i, j] <= MATCH_DEG]


PAIR_COLUMNS = ("clip", "frame", "class_id", "gt_ann_id", "det_id", "gt_valid_index", "pred_valid_index",
                "peak_distance_deg", "pearson", "distance_error_pct")


def matched_pairs(preds: list[CocoClip], gts: list[CocoClip], energy_thr: float, clips=None) -> dict[str, list]:
    """The peak-matched pairs of every clip, frame by frame, as columns (:data:`PAIR_COLUMNS`):
    file annotation indices (gt_ann_id, det_id), positions among the frame's valid annotations
    in file order (gt/pred_valid_index), the peaks' great-circle distance, Pearson r (NaN when
    undefined) and the distance error in % (NaN when the GT has no distance above 1e-3 cm)."""
    cols: dict[str, list] = {c: [] for c in PAIR_COLUMNS}
    names = list(clips) if clips is not None else [str(i) for i in range(len(gts))]
    for name, pc, gc in zip(names, preds, gts):
        for f in np.unique(gc.frame):
            gi = np.flatnonzero(gc.frame == f)
            pi = np.flatnonzero(pc.frame == f)
            if pi.size == 0:
                continue
            for a, b in match_frame(gc.cls[gi], gc.peak_az[gi], gc.peak_el[gi],
                                    pc.cls[pi], pc.peak_az[pi], pc.peak_el[pi]):
                g, p = gi[a], pi[b]
                ge, pe = gc.energy(g), pc.energy(p)
                r = pair_pearson(ge, mask_of(ge, gc.peak[g], energy_thr), pe, mask_of(pe, pc.peak[p], energy_thr))
                gd, err = gc.distance[g], math.nan
                if gd > 1e-3:  # NaN (no distance) compares False
                    pd = pc.distance[p]
                    # a prediction without a distance counts as 0 cm (a 100 % error)
                    err = abs(gd - (0.0 if math.isnan(pd) else pd)) / gd * 100.0
                for c, v in zip(PAIR_COLUMNS, (name, int(f), int(gc.cls[g]), int(gc.index[g]), int(pc.index[p]), a, b,
                                               great_circle_deg(gc.peak_az[g], gc.peak_el[g], pc.peak_az[p],
                                                                pc.peak_el[p]), r, err)):
                    cols[c].append(v)
    return cols


def pair_table(cols: dict[str, list]):
    """The matched pairs as a polars DataFrame (NaN Pearson / distance error kept as NaN)."""
    import polars as pl

    schema = {"clip": pl.String, "frame": pl.Int64, "class_id": pl.Int64, "gt_ann_id": pl.Int64, "det_id": pl.Int64,
              "gt_valid_index": pl.Int64, "pred_valid_index": pl.Int64, "peak_distance_deg": pl.Float64,
              "pearson": pl.Float64, "distance_error_pct": pl.Float64}
    return pl.DataFrame(cols, schema=schema)


def evaluate(preds: list[CocoClip], gts: list[CocoClip], energy_thr: float, clips=None) -> tuple[dict, dict]:
    """(official metrics, details) from prepared clips (same order on both sides; ``clips`` names
    them in the pair table). details: ``n_distance_pairs`` and ``pairs`` (:func:`pair_table`)."""
    mask_map, mask_ap50, per_class = coco_map(preds, gts, energy_thr)
    pairs = matched_pairs(preds, gts, energy_thr, clips)
    rs = [r for r in pairs["pearson"] if not math.isnan(r)]
    errs = [e for e in pairs["distance_error_pct"] if not math.isnan(e)]
    metrics = {
        "mask_mAP": mask_map,
        "mask_AP50": mask_ap50,
        "pearson_r": float(np.mean(rs)) if rs else math.nan,
        "distance_mape": float(np.mean(errs)) if errs else math.nan,
        "per_class_mAP": {str(c): per_class.get(c, math.nan) for c in range(N_CLASSES)},
        "n_pearson_pairs": len(rs),  # printed by the official script; says how much pearson_r rests on
    }
    return metrics, {"n_distance_pairs": len(errs), "pairs": pair_table(pairs)}


def _prepare(anns, sigma: float, engine: str) -> CocoClip:
    return prepare_clip(anns, sigma, render_energies if engine == "fast" else render_one_by_one)


def _prepare_job(src, sigma: float, engine: str) -> CocoClip:
    return _prepare(src.load(), sigma, engine)


def score_coco(clips, *, map_fn, sigma: float = 6.0, energy_thr: float = 0.10, engine: str = "fast", jobs: int = 1,
               cache_dir=None, backend: str = "loky", scheduler: str | None = None) -> tuple[dict, dict]:
    """Score [(clip, prediction source, GT source)] (scoring order; sources as in
    :mod:`calib.score.api`) -> (official metrics, details).

    The fast engine renders with :func:`render_energies` and keeps prepared GT (sparse energies) in
    the GT cache under the GT's content hash and sigma; the reference engine renders triplet by
    triplet, nothing cached. Rendering runs per clip through ``map_fn`` (``map_fn(fn, items, jobs=,
    backend=, scheduler=)`` -> ``[fn(*item) for item in items]``: the caller's parallel map, so this
    module needs nothing of :mod:`calib.score.api`); the COCO evaluation and the peak matching run here."""
    from calib.score.cache import GT_CACHE, entry_key

    par = {"jobs": jobs, "backend": backend, "scheduler": scheduler}
    if engine == "reference":
        preds = [_prepare_job(p, sigma, engine) for _, p, _ in clips]
        gts = [_prepare_job(g, sigma, engine) for _, _, g in clips]
        return evaluate(preds, gts, energy_thr, [c for c, _, _ in clips])
    keys = [entry_key("coco", g.digest(cache_dir), sigma=float(sigma), renderer=COCO_RENDER_VERSION)
            for _, _, g in clips]
    GT_CACHE.save_digests(cache_dir)
    gts = [GT_CACHE.get(k, cache_dir, CocoClip) for k in keys]
    todo = [i for i, g in enumerate(gts) if g is None]
    done = map_fn(_prepare_job, [(clips[i][2], sigma, engine) for i in todo]
                        + [(p, sigma, engine) for _, p, _ in clips], **par)
    for i, g in zip(todo, done):
        GT_CACHE.put(keys[i], g, cache_dir)
        gts[i] = g
    return evaluate(done[len(todo):], gts, energy_thr, [c for c, _, _ in clips])
