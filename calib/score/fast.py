"""The fast engine for the ``dcase2026`` protocol: same numbers as the reference, much sooner.

* GT maps are rendered once per clip (:class:`GTMaps`, cached by content hash in
  :mod:`calib.score.cache`) and kept sparse;
* a polygon is interpolated on the grid points of its bounding box only, many polygons in one
  vectorized pass (:func:`calib.score.render.render_stack`);
* predictions are rendered only in buckets that have GT and only when their box meets a GT's
  support (any other map gives IoU 0 and no Pearson), a chunk of buckets at a time;
* all IoUs of a (frame, class) bucket come from one vectorized min/max over stacked full maps,
  summed over the 5000 pixels of each pair exactly as numpy sums one 50 x 100 array.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from calib.score.cache import pack_sparse
from calib.score.gt_maps import NPIX, GTMaps, concat_ranges
from calib.score.matching import KIND_MATCHED, ClipRecords, bucket_keys, group_positions
from calib.score.render import H, W, render_stack

_RENDER_CHUNK = 256  # predictions rendered per batch (render_stack), bounds the maps held
_PAIR_BLOCK = 32  # (prediction, GT) pairs per vectorized min/max block: temporaries stay in cache


def rows_with_predictions(frame: np.ndarray, cls: np.ndarray, preds) -> np.ndarray:
    """Bool per GT row: its (frame, class) bucket holds a prediction."""
    if not len(preds):
        return np.zeros(frame.size, dtype=bool)
    pf = np.array([p.frame for p in preds], dtype=np.int64)
    pc = np.array([p.class_id for p in preds], dtype=np.int64)
    return np.isin(frame * 64 + cls, pf * 64 + pc)  # class ids are < 13


def render_gt_maps(gts, rows=None, base: GTMaps | None = None) -> GTMaps:
    """Render the GT annotations of a clip: all, or those marked in ``rows`` (a bool mask), on
    top of what ``base`` (the same clip's maps) already holds."""
    n = len(gts)
    want = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    is32 = np.zeros(n, dtype=bool) if base is None else base.is32.copy()
    done = np.zeros(n, dtype=bool) if base is None else base.done.copy()
    flats: list = [None] * n
    todo = []
    for k in range(n):
        if base is not None and done[k]:
            a, b = base.off[k], base.off[k + 1]
            flats[k] = (base.pix[a:b], base.vals[a:b])
        elif want[k]:
            todo.append(k)
    for i in range(0, len(todo), _RENDER_CHUNK):
        ks = todo[i : i + _RENDER_CHUNK]
        maps, is32[ks] = render_stack([gts[k].polygons for k in ks])
        for k, row in zip(ks, maps):
            flats[k] = row
    done[todo] = True
    off, pix, vals = pack_sparse(flats, np.float64)
    return GTMaps(
        frame=np.array([g.frame for g in gts], dtype=np.int64),
        cls=np.array([g.class_id for g in gts], dtype=np.int64),
        index=np.array([g.index for g in gts], dtype=np.int64),
        distance=np.array([np.nan if g.distance is None else g.distance for g in gts], dtype=np.float64),
        is32=is32, done=done, off=off, pix=pix, vals=vals,
    )


def support_boxes(gt: GTMaps) -> np.ndarray:
    """(n, 4) int64 (r0, r1, c0, c1): the rows and columns spanned by each GT map's nonzero
    pixels; an empty map gets r0 > r1, a box that meets nothing."""
    n = len(gt)
    out = np.tile(np.array([1, 0, 1, 0], dtype=np.int64), (n, 1))
    sizes = np.diff(gt.off)
    full = np.flatnonzero(sizes > 0)
    if full.size:
        pix = gt.pix.astype(np.int64)
        r, c = pix // W, pix % W
        starts = gt.off[full]
        out[full, 0] = np.minimum.reduceat(r, starts)
        out[full, 1] = np.maximum.reduceat(r, starts)
        out[full, 2] = np.minimum.reduceat(c, starts)
        out[full, 3] = np.maximum.reduceat(c, starts)
    return out


BOX_MARGIN = 0.51  # canvas px: a stamped point lands within 0.5 of it, float32 scaling adds < 1e-4


def pred_boxes(preds) -> np.ndarray:
    """(n, 4) int64 (r0, r1, c0, c1) per prediction, holding every pixel of the folded (50, 100)
    map it can set: the whole map when it cannot be bounded so simply (a polygon over 179 degrees
    wide may be moved across the seam; one reaching canvas column 100 folds onto column 0), and
    r0 > r1 when it has no points.

    Interpolated values only fall on grid points inside a polygon's bounding box and stamped
    points on their rounded position, so the box of the points, widened by BOX_MARGIN, holds both."""
    n = len(preds)
    out = np.tile(np.array([1, 0, 1, 0], dtype=np.int64), (n, 1))
    polys = [(k, q) for k, a in enumerate(preds) for q in a.polygons if len(q)]
    if not polys:
        return out
    owner = np.array([k for k, _ in polys], dtype=np.intp)
    pts = np.concatenate([q for _, q in polys])
    starts = np.cumsum([0] + [len(q) for _, q in polys[:-1]])
    lo_x, hi_x = np.minimum.reduceat(pts[:, 0], starts), np.maximum.reduceat(pts[:, 0], starts)
    lo_y, hi_y = np.minimum.reduceat(pts[:, 1], starts), np.maximum.reduceat(pts[:, 1], starts)
    box = np.array([np.inf, -np.inf, np.inf, -np.inf]) * np.ones((n, 1))
    np.minimum.at(box[:, 0], owner, lo_y * (H / 180))
    np.maximum.at(box[:, 1], owner, hi_y * (H / 180))
    np.minimum.at(box[:, 2], owner, lo_x * (W / 360))
    np.maximum.at(box[:, 3], owner, hi_x * (W / 360))
    has = np.isfinite(box[:, 0])
    wide = np.bincount(owner, weights=(hi_x - lo_x) > 179.0, minlength=n) > 0
    lo = np.floor(box[has][:, [0, 2]] - BOX_MARGIN)
    hi = np.ceil(box[has][:, [1, 3]] + BOX_MARGIN)
    out[has] = np.column_stack([np.maximum(lo[:, 0], 0), np.minimum(hi[:, 0], H - 1),
                                np.maximum(lo[:, 1], 0), hi[:, 1]]).astype(np.int64)
    unbounded = has & (wide | (out[:, 3] >= W))
    out[unbounded] = (0, H - 1, 0, W - 1)
    return out


def meets_gt(pkey: np.ndarray, pbox: np.ndarray, gkey: np.ndarray, gbox: np.ndarray) -> np.ndarray:
    """(n_p,) bool: whether each prediction's box meets the support box of a GT of its bucket
    (keys: frame * 64 + class). One that meets none has every pixel of each pair's min 0, so
    soft IoUs of exactly 0 (0 / union, or 0 for a tiny union) and Pearson r NaN (0 on the GT's
    pixels): its map need not be rendered."""
    order = np.argsort(gkey, kind="stable")
    lo = np.searchsorted(gkey[order], pkey, side="left")
    hi = np.searchsorted(gkey[order], pkey, side="right")
    counts = hi - lo
    pi = np.repeat(np.arange(pkey.size), counts)  # every (prediction, same-bucket GT) pair
    gi = order[concat_ranges(lo, counts)]
    p, g = pbox[pi], gbox[gi]
    meet = ~((g[:, 1] < p[:, 0]) | (g[:, 0] > p[:, 1]) | (g[:, 3] < p[:, 2]) | (g[:, 2] > p[:, 3]))
    return np.bincount(pi[meet], minlength=pkey.size) > 0


def _mean_std(x: np.ndarray) -> tuple[np.float64, float]:
    """x.mean() and x.std() of a 1-D float64 array with numpy's own steps (pairwise sums, the
    same divisions), minus the Python layers around them: bit-identical, several times sooner."""
    n = x.size
    m = np.add.reduce(x) / n
    d = x - m
    return m, math.sqrt(np.add.reduce(d * d) / n)


def pearson_at(g: np.ndarray, p: np.ndarray) -> float:
    """:func:`calib.score.matching.pearson` given the GT map's positive values g (in pixel order)
    and the prediction's values p at those pixels, which is all it looks at."""
    if g.size < 2:
        return float("nan")
    gm, gs = _mean_std(g)
    pm, ps = _mean_std(p)
    if gs < 1e-12 or ps < 1e-12:
        return float("nan")
    return float(np.add.reduce(((g - gm) / gs) * ((p - pm) / ps)) / g.size)


def bucket_iou(P: np.ndarray, p32: np.ndarray, G: np.ndarray, g32: np.ndarray) -> np.ndarray:
    """(n_p, n_g) float32 soft IoUs.

    Sums run over each pair's full 5000 pixels (numpy's pairwise sum of one contiguous row, the
    same as summing the 50 x 100 array), in float64 unless both maps are float32 maps."""
    n_p, n_g = P.shape[0], G.shape[0]
    inter = np.empty((n_p, n_g), dtype=np.float64)
    union = np.empty((n_p, n_g), dtype=np.float64)
    step = max(1, _PAIR_BLOCK // max(n_g, 1))
    for i in range(0, n_p, step):
        a = P[i : i + step, None, :]
        inter[i : i + step] = np.minimum(a, G[None]).sum(-1)
        union[i : i + step] = np.maximum(a, G[None]).sum(-1)
    iou = _iou_of_sums(inter, union)
    for i, j in zip(*np.nonzero(p32[:, None] & g32[None, :])):
        iou[i, j] = iou32(P[i], G[j])
    return iou


def _iou_of_sums(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """float32 inter / union, 0 where the union is below 1e-8 (float64 sums)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union < 1e-8, 0.0, inter / union).astype(np.float32)


def iou32(p: np.ndarray, g: np.ndarray) -> np.float32:
    """Soft IoU of two float32 maps (stamped points only): the official float32 sums."""
    a, b = p.astype(np.float32), g.astype(np.float32)
    u = np.add.reduce(np.maximum(a, b))
    return np.float32(0.0) if u < np.float32(1e-8) else np.add.reduce(np.minimum(a, b)) / u


def _chunks(buckets: list, need: np.ndarray, size: int):
    """Consecutive runs of buckets holding about ``size`` predictions to render."""
    start, count = 0, 0
    for i, (_, P, rows) in enumerate(buckets):
        if P is not None and rows is not None:
            count += int(need[P].sum())
        if count >= size:
            yield buckets[start : i + 1]
            start, count = i + 1, 0
    if start < len(buckets):
        yield buckets[start:]


def score_clip_fast(clip: str, preds, gt: GTMaps) -> ClipRecords:
    """Records of one clip, identical to :func:`calib.score.reference.score_clip_reference`.

    Buckets are taken in the official order, a chunk at a time: the chunk's predictions that need
    a map are rendered together (render_stack), the IoUs of its one-prediction one-GT buckets (most
    buckets) come from one vectorized pass, then its records are written in order."""
    pred_groups = group_positions((int(p.frame), int(p.class_id)) for p in preds)
    gt_groups = group_positions(zip(gt.frame.tolist(), gt.cls.tolist()))
    gindex = gt.index.tolist()
    pkey = np.array([int(p.frame) * 64 + int(p.class_id) for p in preds], dtype=np.int64)  # class ids < 13
    need = meets_gt(pkey, pred_boxes(preds), gt.frame * 64 + gt.cls, support_boxes(gt))
    buckets = [(key, pred_groups.get(key), gt_groups.get(key)) for key in bucket_keys(pred_groups, gt_groups)]
    rec = ClipRecords(clip)
    for chunk in _chunks(buckets, need, _RENDER_CHUNK):
        drawn, pairs = [], []  # predictions to render; (prediction, GT) of one-to-one buckets
        for _, P, rows in chunk:
            if P is None or rows is None:
                continue
            drawn += [k for k in P if need[k]]
            if len(P) == 1 and len(rows) == 1 and need[P[0]]:
                pairs.append((P[0], rows[0]))
        maps, map32 = render_stack([preds[k].polygons for k in drawn])
        row_of = dict(zip(drawn, range(len(drawn))))
        pair_ious = dict(zip((k for k, _ in pairs),
                             _pair_ious([row_of[k] for k, _ in pairs], maps, map32, [r for _, r in pairs], gt)))
        for (frame, cls), P, rows in chunk:
            if P is None:
                for r in rows:
                    rec.fn(frame, cls, gindex[r])
                continue
            if rows is None:
                for k in P:
                    rec.fp(frame, cls, preds[k].index, preds[k].score)
                continue
            if len(P) == 1 and len(rows) == 1:  # most buckets: the assignment is the one pair
                k, r = P[0], rows[0]
                iou, r_p = np.float32(0.0), float("nan")  # a map that misses the GT: see meets_gt
                if need[k]:
                    iou = pair_ious[k]
                    a, b = gt.off[r], gt.off[r + 1]
                    r_p = pearson_at(gt.vals[a:b], maps[row_of[k]][gt.pix[a:b]])
                rec.add(KIND_MATCHED, frame, cls, preds[k].index, gindex[r], preds[k].score, iou, iou, iou, r_p)
                continue
            pm = np.zeros((len(P), NPIX), dtype=np.float64)
            p32 = np.zeros(len(P), dtype=bool)
            for i, k in enumerate(P):
                if need[k]:
                    pm[i], p32[i] = maps[row_of[k]], map32[row_of[k]]
            _score_bucket(rec, frame, cls, [preds[k] for k in P], pm, p32, rows, gt, gindex)
    return rec


def _pair_ious(map_rows: list[int], maps: np.ndarray, map32: np.ndarray, gt_rows: list[int],
               gt: GTMaps) -> np.ndarray:
    """float32 soft IoU of each (map row, GT row) pair, as :func:`bucket_iou` gives it, the pairs
    taken a block at a time."""
    inter = np.empty(len(map_rows), dtype=np.float64)
    union = np.empty(len(map_rows), dtype=np.float64)
    for i in range(0, len(map_rows), _PAIR_BLOCK):  # blocks small enough to stay in cache
        P = maps[map_rows[i : i + _PAIR_BLOCK]]
        G = gt.dense(gt_rows[i : i + _PAIR_BLOCK])
        inter[i : i + _PAIR_BLOCK] = np.minimum(P, G).sum(-1)
        union[i : i + _PAIR_BLOCK] = np.maximum(P, G).sum(-1)
    iou = _iou_of_sums(inter, union)
    for i in np.flatnonzero(map32[map_rows] & gt.is32[gt_rows]):
        iou[i] = iou32(maps[map_rows[i]], gt.dense([gt_rows[i]])[0])
    return iou


def _score_bucket(rec: ClipRecords, frame: int, cls: int, P: list, pm: np.ndarray, p32: np.ndarray,
                  rows: list[int], gt: GTMaps, gindex: list[int]) -> None:
    """Records of a bucket with several predictions or GT: Hungarian assignment on soft IoU."""
    gm = gt.dense(rows)
    iou = bucket_iou(pm, p32, gm, gt.is32[rows])
    r_idx, c_idx = linear_sum_assignment(-iou)
    best_p = iou.max(axis=1)
    best_g = iou.max(axis=0)
    for i, j in zip(r_idx, c_idx):
        a, b = gt.off[rows[j]], gt.off[rows[j] + 1]  # the GT map's nonzero (so positive) pixels
        rec.add(KIND_MATCHED, frame, cls, P[i].index, gindex[rows[j]], P[i].score, iou[i, j],
                best_p[i], best_g[j], pearson_at(gt.vals[a:b], pm[i][gt.pix[a:b]]))
    if len(r_idx) < len(P):
        taken = set(r_idx.tolist())
        for i, p in enumerate(P):
            if i not in taken:
                rec.fp(frame, cls, p.index, p.score, best=best_p[i])
    if len(c_idx) < len(rows):
        taken = set(c_idx.tolist())
        for j, r in enumerate(rows):
            if j not in taken:
                rec.fn(frame, cls, gindex[r], best=best_g[j])
