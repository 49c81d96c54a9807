"""The fast engine for the ``dcase2026`` protocol: same numbers as the reference, much sooner.

* GT maps are rendered once per clip (:class:`GTMaps`, cached by content hash in
  :mod:`calib.score.cache`) and kept sparse;
* a detection's IoUs with the GT of its bucket, and the Pearson r of each such pair, are computed
  once per content and cached (:mod:`calib.score.pred_cache`): a detection found there is not
  rendered again, so a subset or a re-scored copy of a scored table renders nothing;
* a missing detection is rendered only when its box meets the support of a GT of its bucket (any
  other map gives IoU 0 and no Pearson), many at once, each polygon interpolated on the grid
  points of its bounding box only (:func:`calib.score.render.render_stack`);
* IoUs come from vectorized min/max over stacked full maps, summed over the 5000 pixels of each
  pair exactly as numpy sums one 50 x 100 array; Pearson r of all pairs with one GT at once;
* records come from the cached rows: the Hungarian assignment of each bucket on the submatrix of
  the detections present (one-row and one-column buckets, most of them, without a solver call:
  see :func:`_single_line_assignment`), records placed in the official order by sort keys.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from calib.score.cache import pack_sparse
from calib.score.columns import ClipAnnotations
from calib.score.gt_maps import GTMaps, concat_ranges
from calib.score.matching import KIND_FN, KIND_FP, KIND_MATCHED, ClipRecords, bucket_keys
from calib.score.pred_cache import PredIoUs, merge, sort_keys
from calib.score.render import H, W, render_stack

_RENDER_CHUNK = 256  # predictions rendered per batch (render_stack), bounds the maps held
_PAIR_BLOCK = 32  # (prediction, GT) pairs per vectorized min/max block: temporaries stay in cache


def rows_with_predictions(frame: np.ndarray, cls: np.ndarray, pred_buckets: np.ndarray) -> np.ndarray:
    """Bool per GT row: its (frame, class) bucket is one of ``pred_buckets`` (frame * 64 + class)."""
    return np.isin(frame * 64 + cls, pred_buckets)  # class ids are < 13


def render_gt_maps(gts, rows=None, base: GTMaps | None = None) -> GTMaps:
    """Render the GT annotations of a clip (a list of annotations or :class:`ClipAnnotations`):
    all, or those marked in ``rows`` (a bool mask), on top of what ``base`` (the same clip's maps)
    already holds."""
    cols = gts if isinstance(gts, ClipAnnotations) else ClipAnnotations.from_annotations(gts)
    n = len(cols)
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
        maps, is32[ks] = render_stack([cols.polygons(k) for k in ks])
        for k, row in zip(ks, maps):
            flats[k] = row
    done[todo] = True
    off, pix, vals = pack_sparse(flats, np.float64)
    return GTMaps(frame=cols.frame.copy(), cls=cols.cls.copy(), index=cols.index.copy(),
                  distance=np.where(cols.has_distance, cols.distance, np.nan),
                  is32=is32, done=done, off=off, pix=pix, vals=vals)


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
    """:func:`point_boxes` of a list of annotations."""
    return point_boxes(ClipAnnotations.from_annotations(preds))


def point_boxes(anns: ClipAnnotations, rows=None) -> np.ndarray:
    """(n, 4) int64 (r0, r1, c0, c1) per annotation (those of ``rows``, default all), holding every
    pixel of the folded (50, 100) map it can set: the whole map when it cannot be bounded so simply
    (a polygon over 179 degrees wide may be moved across the seam; one reaching canvas column 100
    folds onto column 0), and r0 > r1 when it has no points.

    Interpolated values only fall on grid points inside a polygon's bounding box and stamped
    points on their rounded position, so the box of the points, widened by BOX_MARGIN, holds both."""
    rows = np.arange(len(anns)) if rows is None else np.asarray(rows, dtype=np.int64)
    n = rows.size
    out = np.tile(np.array([1, 0, 1, 0], dtype=np.int64), (n, 1))
    n_poly = anns.ann_off[rows + 1] - anns.ann_off[rows]
    polys = concat_ranges(anns.ann_off[rows], n_poly)
    size = anns.poly_off[polys + 1] - anns.poly_off[polys]
    full = size > 0
    if not full.any():
        return out
    owner = np.repeat(np.arange(n), n_poly)[full]
    starts = np.cumsum(size[full]) - size[full]
    pts = anns.xyz[concat_ranges(anns.poly_off[polys[full]], size[full])]
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


def pearson_rows(g: np.ndarray, P: np.ndarray) -> np.ndarray:
    """:func:`pearson_at` of g with each row of P (k, g.size), all at once: numpy sums each row of
    a C-ordered 2-D array pairwise as it sums a 1-D array, so every value is bit-identical."""
    k, m = P.shape
    out = np.full(k, np.nan)
    if m < 2 or k == 0:
        return out
    gm, gs = _mean_std(g)
    if gs < 1e-12:
        return out
    pm = np.add.reduce(P, axis=1) / m
    d = P - pm[:, None]
    ps = np.sqrt(np.add.reduce(d * d, axis=1) / m)
    ok = ps >= 1e-12
    z = (g - gm) / gs
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.add.reduce(z * (d[ok] / ps[ok, None]), axis=1) / m
    out[ok] = r
    return out


def pair_ious(P: np.ndarray, p32: np.ndarray, G: np.ndarray, g32: np.ndarray) -> np.ndarray:
    """(n,) float32 soft IoU of each pair of rows (P[i], G[i]) of full flat maps: sums over each
    pair's 5000 pixels in float64 (numpy's pairwise sum of one contiguous row, as it sums a 50 x
    100 array), the official float32 sums where both maps are float32 maps (stamped points only)."""
    inter = np.minimum(P, G).sum(-1)
    union = np.maximum(P, G).sum(-1)
    iou = _iou_of_sums(inter, union)
    for i in np.flatnonzero(p32 & g32):
        iou[i] = iou32(P[i], G[i])
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


# ----------------------------------------------------------------------------------------------
# prediction rows: what the cache keeps per detection
def bucket_gt_rows(pkey: np.ndarray, gkey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(counts, gt_rows): the GT count of each prediction's bucket, and the GT rows of each
    prediction's bucket in GT order, concatenated prediction after prediction."""
    order = np.argsort(gkey, kind="stable")
    lo = np.searchsorted(gkey[order], pkey, side="left")
    counts = np.searchsorted(gkey[order], pkey, side="right") - lo
    return counts, order[concat_ranges(lo, counts)]


def render_predictions(annotations) -> tuple[np.ndarray, np.ndarray]:
    """:func:`calib.score.render.render_stack` for prediction maps: the one place the engine draws
    a prediction (tests count the calls here)."""
    return render_stack(annotations)


def compute_pred_rows(preds: ClipAnnotations, rows: np.ndarray, gt: GTMaps) -> tuple[PredIoUs, int]:
    """The cache rows of predictions ``rows`` (distinct contents, each in a bucket with GT whose GT
    maps are rendered), sorted by key, and how many were rendered.

    A prediction whose box meets no GT support of its bucket gets IoUs 0 and Pearson NaN without a
    map (:func:`meets_gt`); the others are rendered a chunk at a time, their IoU with every GT of
    the bucket taken in blocks of pairs, their Pearson r with each GT for all of them at once."""
    rows = np.asarray(rows, dtype=np.int64)
    pkey = preds.bucket()[rows]
    gkey = gt.frame * 64 + gt.cls
    n_g, pair_gt = bucket_gt_rows(pkey, gkey)
    off = np.concatenate(([0], np.cumsum(n_g))).astype(np.int64)
    iou = np.zeros(int(off[-1]), dtype=np.float32)
    pearson = np.full(int(off[-1]), np.nan)
    drawn = np.flatnonzero(meets_gt(pkey, point_boxes(preds, rows), gkey, support_boxes(gt)))
    for c in range(0, drawn.size, _RENDER_CHUNK):
        chunk = drawn[c: c + _RENDER_CHUNK]
        maps, map32 = render_predictions([preds.polygons(k) for k in rows[chunk].tolist()])
        at = concat_ranges(off[chunk], n_g[chunk])  # this chunk's pairs
        map_row = np.repeat(np.arange(chunk.size), n_g[chunk])
        g_row = pair_gt[at]
        for b in range(0, at.size, _PAIR_BLOCK):  # blocks small enough to stay in cache
            s = slice(b, b + _PAIR_BLOCK)
            iou[at[s]] = pair_ious(maps[map_row[s]], map32[map_row[s]], gt.dense(g_row[s]), gt.is32[g_row[s]])
        by_gt = np.argsort(g_row, kind="stable")
        firsts = np.flatnonzero(np.r_[True, g_row[by_gt][1:] != g_row[by_gt][:-1]])
        for lo, hi in zip(firsts.tolist(), np.r_[firsts[1:], by_gt.size].tolist()):
            j = int(g_row[by_gt[lo]])
            a, b = gt.off[j], gt.off[j + 1]  # the GT map's nonzero (so positive) pixels
            pairs = by_gt[lo:hi]
            pearson[at[pairs]] = pearson_rows(gt.vals[a:b], maps[np.ix_(map_row[pairs], gt.pix[a:b])])
    keys = preds.render_keys(rows)
    got = PredIoUs(key=keys, off=off, iou=iou, pearson=pearson, sources=np.zeros(0, dtype=str))
    return got.take(sort_keys(keys)), int(drawn.size)


def missing_rows(preds: ClipAnnotations, gt: GTMaps, known: PredIoUs | None) -> tuple[np.ndarray, np.ndarray]:
    """(in_gt, miss): bool per prediction: its bucket has GT; it does and its row is not in
    ``known``, or is there with another length (then it is computed again). Keys are computed for
    the predictions of buckets with GT only (the others need no row)."""
    in_gt = np.isin(preds.bucket(), gt.frame * 64 + gt.cls)
    miss = in_gt.copy()
    if known is not None and len(known) and in_gt.any():
        idx = np.flatnonzero(in_gt)
        found = known.find(preds.render_keys(idx))
        n_g, _ = bucket_gt_rows(preds.bucket()[idx], gt.frame * 64 + gt.cls)
        ok = found >= 0
        ok[ok] = known.n_gt(found[ok]) == n_g[ok]
        miss[idx[ok]] = False
    return in_gt, miss


def unique_contents(preds: ClipAnnotations, rows: np.ndarray) -> np.ndarray:
    """The first of ``rows`` of each distinct render key (a detection repeated is computed once)."""
    if rows.size < 2:
        return rows
    keys = preds.render_keys(rows)
    order = np.lexsort((np.arange(rows.size), keys[:, 1], keys[:, 0]))
    k = keys[order]
    first = np.r_[True, (k[1:] != k[:-1]).any(axis=1)]
    return np.sort(rows[order[first]])


def gt_rows_to_render(preds: ClipAnnotations, gt: GTMaps, miss: np.ndarray,
                      gts: ClipAnnotations | None = None) -> np.ndarray:
    """Bool per GT row: not rendered yet and needed, i.e. in the bucket of a prediction to compute
    and, when the GT annotations ``gts`` are given, with a box of points that meets the box of one
    such prediction (:func:`point_boxes`). A GT row left out has a support disjoint from every
    such prediction's map: their IoUs are exactly 0 and their Pearson r NaN whether it is rendered
    or not (:func:`meets_gt`), so its map is drawn only when a prediction that meets it comes."""
    need = rows_with_predictions(gt.frame, gt.cls, preds.bucket()[miss]) & ~gt.done
    if gts is None or not need.any():
        return need
    rows = np.flatnonzero(need)
    pred_rows = np.flatnonzero(miss)
    meet = meets_gt(gt.frame[rows] * 64 + gt.cls[rows], point_boxes(gts, rows),
                    preds.bucket()[pred_rows], point_boxes(preds, pred_rows))
    need[rows[~meet]] = False
    return need


def update_rows(preds: ClipAnnotations, gt: GTMaps, known: PredIoUs | None,
                miss: np.ndarray) -> tuple[PredIoUs | None, PredIoUs | None, int]:
    """(entry, added, rendered): ``known`` with the rows of the ``miss`` predictions added, the
    added rows alone (None when nothing was missing), and how many maps were rendered."""
    todo = unique_contents(preds, np.flatnonzero(miss))
    if not todo.size:
        return known, None, 0
    added, rendered = compute_pred_rows(preds, todo, gt)
    return merge(known, added), added, rendered


# ----------------------------------------------------------------------------------------------
# records from the rows
def _groups(keys: np.ndarray):
    """(order, first_seen, within): positions sorted by key (stably), each distinct key's first
    position, and each position's rank among the positions of its key (input order)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]]) if keys.size else np.zeros(0, dtype=np.int64)
    run = np.repeat(starts, np.diff(np.r_[starts, keys.size]))
    within = np.empty(keys.size, dtype=np.int64)
    within[order] = np.arange(keys.size) - run
    return order, order[starts], within


def official_bucket_rank(pkey: np.ndarray, gkey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, rank): the distinct bucket keys (frame * 64 + class) of both sides, sorted, and the
    rank of each in the official visiting order: Python's iteration order of
    ``set(pred_groups) | set(gt_groups)``, the groups being dicts in first-seen order
    (:func:`calib.score.matching.bucket_keys` on the same dicts)."""
    def first_seen(keys):
        _, first, _ = _groups(keys)
        k = keys[np.sort(first)]
        return dict.fromkeys(zip((k // 64).tolist(), (k % 64).tolist()))

    visit = np.array([f * 64 + c for f, c in bucket_keys(first_seen(pkey), first_seen(gkey))], dtype=np.int64)
    order = np.argsort(visit)  # the key at sorted place i is visited order[i]-th
    return visit[order], order


def _single_line_assignment(iou: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """For buckets whose IoU matrix is one row or one column (the line's values ``iou``, grouped by
    bucket ``owner`` 0..n-1 in line order): the position in ``iou`` of the pair
    ``linear_sum_assignment(-matrix)`` picks, the first largest IoU of each line.

    scipy's solver (shortest augmenting paths; a matrix with more rows than columns is transposed
    first) then makes a single row, scans the columns from the last to the first keeping the
    lowest cost and, at equal cost, the later-scanned unassigned column: the first largest
    (tests/score/test_pred_cache.py checks this against scipy on tie-heavy lines)."""
    best = np.full(n, -np.inf, dtype=np.float64)
    np.maximum.at(best, owner, iou.astype(np.float64))
    hit = np.flatnonzero(iou.astype(np.float64) == best[owner])
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, owner[hit], hit)
    return first


class _Records:
    """Record columns gathered part by part, each record with its bucket's rank in the official
    order and its place within the bucket; :meth:`arrays` sorts them into the official order."""

    def __init__(self, keys: np.ndarray, rank: np.ndarray):
        self.keys, self.rank, self.parts = keys, rank, []

    def add(self, kind, key, within, det, gt, score, iou, best, gt_best, pearson) -> None:
        key = np.asarray(key, dtype=np.int64)
        n = key.size
        col = lambda v, dt: np.broadcast_to(np.asarray(v, dtype=dt), (n,))  # noqa: E731
        self.parts.append({"_rank": self.rank[np.searchsorted(self.keys, key)], "_within": col(within, np.int64),
                           "kind": col(kind, np.int8), "frame": key // 64, "cls": key % 64, "det": col(det, np.int64),
                           "gt": col(gt, np.int64), "score": col(score, np.float64), "iou": col(iou, np.float32),
                           "best": col(best, np.float32), "gt_best": col(gt_best, np.float32),
                           "pearson": col(pearson, np.float64)})

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.parts:
            return ClipRecords().arrays()
        out = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        order = np.lexsort((out.pop("_within"), out.pop("_rank")))
        return {k: v[order] for k, v in out.items()}


def clip_records(preds: ClipAnnotations, gt: GTMaps, entry: PredIoUs | None) -> dict[str, np.ndarray]:
    """The clip's records in the official order (:meth:`calib.score.matching.ClipRecords.arrays`),
    identical to :func:`calib.score.reference.score_clip_reference`'s, from the cached rows of
    ``entry``, which must hold every prediction of a bucket with GT (:func:`update_rows`)."""
    pkey, gkey = preds.bucket(), gt.frame * 64 + gt.cls
    rec = _Records(*official_bucket_rank(pkey, gkey))
    _, _, p_within = _groups(pkey)
    _, _, g_within = _groups(gkey)
    p_ng, _ = bucket_gt_rows(pkey, gkey)  # GT count of each prediction's bucket
    p_np, _ = bucket_gt_rows(pkey, pkey)  # prediction count of each prediction's bucket
    g_np, _ = bucket_gt_rows(gkey, pkey)  # prediction count of each GT's bucket
    nan = np.nan
    # a bucket without predictions: its GT are false negatives; without GT: its predictions false positives
    g = np.flatnonzero(g_np == 0)
    rec.add(KIND_FN, gkey[g], g_within[g], -1, gt.index[g], nan, 0.0, 0.0, 0.0, nan)
    p = np.flatnonzero(p_ng == 0)
    rec.add(KIND_FP, pkey[p], p_within[p], preds.index[p], -1, preds.score[p], 0.0, 0.0, nan, nan)
    both = np.flatnonzero(p_ng > 0)
    if both.size:
        row = np.full(len(preds), -1, dtype=np.int64)
        row[both] = entry.find(preds.render_keys(both)) if entry is not None else -1
        if (row[both] < 0).any() or (entry.n_gt(row[both]) != p_ng[both]).any():
            raise RuntimeError("a prediction of a bucket with GT has no row in the entry (see update_rows)")
        start = np.where(row >= 0, entry.off[np.maximum(row, 0)], 0)
        one_gt = both[p_ng[both] == 1]
        one_pred = both[(p_ng[both] > 1) & (p_np[both] == 1)]
        general = both[(p_ng[both] > 1) & (p_np[both] > 1)]
        _one_gt_buckets(rec, preds, gt, entry, one_gt, start, pkey, gkey, p_within)
        _one_pred_buckets(rec, preds, gt, entry, one_pred, start, p_ng, pkey, gkey, g_within)
        _general_buckets(rec, preds, gt, entry, general, start, p_ng, pkey, gkey)
    return rec.arrays()


def _one_gt_buckets(rec, preds, gt, entry, P, start, pkey, gkey, p_within) -> None:
    """Buckets with one GT (one IoU column): the first prediction with the largest IoU is matched,
    the others are false positives in index order."""
    if not P.size:
        return
    iou, r = entry.iou[start[P]], entry.pearson[start[P]]
    _, owner = np.unique(pkey[P], return_inverse=True)
    won = _single_line_assignment(iou, owner, int(owner.max()) + 1)  # into P (ascending: index order)
    _, g_row = bucket_gt_rows(pkey[P[won]], gkey)
    m = P[won]
    rec.add(KIND_MATCHED, pkey[m], 0, preds.index[m], gt.index[g_row], preds.score[m], iou[won], iou[won], iou[won],
            r[won])
    lost = np.ones(P.size, dtype=bool)
    lost[won] = False
    f = P[lost]
    rec.add(KIND_FP, pkey[f], 1 + p_within[f], preds.index[f], -1, preds.score[f], 0.0, iou[lost], np.nan, np.nan)


def _one_pred_buckets(rec, preds, gt, entry, P, start, p_ng, pkey, gkey, g_within) -> None:
    """Buckets with one prediction and several GT (one IoU row): the prediction is matched with the
    first GT of the largest IoU, the other GT are false negatives in GT order."""
    if not P.size:
        return
    n_g, g_rows = bucket_gt_rows(pkey[P], gkey)  # each prediction's GT rows, in GT order, one after another
    at = concat_ranges(start[P], n_g)
    iou, r = entry.iou[at], entry.pearson[at]
    owner = np.repeat(np.arange(P.size), n_g)
    won = _single_line_assignment(iou, owner, P.size)  # into the concatenated rows
    rec.add(KIND_MATCHED, pkey[P], 0, preds.index[P], gt.index[g_rows[won]], preds.score[P], iou[won], iou[won],
            iou[won], r[won])
    lost = np.ones(at.size, dtype=bool)
    lost[won] = False
    g = g_rows[lost]
    rec.add(KIND_FN, gkey[g], 1 + g_within[g], -1, gt.index[g], np.nan, 0.0, iou[lost], iou[lost], np.nan)


def _general_buckets(rec, preds, gt, entry, P, start, p_ng, pkey, gkey) -> None:
    """Buckets with several predictions and several GT: scipy's assignment on the cached IoU
    submatrix of the predictions present; matched pairs in its order, then the unassigned
    predictions, then the unassigned GT (the official order)."""
    if not P.size:
        return
    P = P[np.lexsort((P, pkey[P]))]  # bucket by bucket, predictions in index order
    cut = np.flatnonzero(np.r_[True, pkey[P][1:] != pkey[P][:-1], True])
    _, g_rows_all = bucket_gt_rows(pkey[P[cut[:-1]]], gkey)
    g_start = np.concatenate(([0], np.cumsum(p_ng[P[cut[:-1]]])))
    cols: dict[str, list] = {k: [] for k in ("kind", "key", "within", "det", "gt", "score", "iou", "best", "gt_best",
                                             "pearson")}
    for b, (lo, hi) in enumerate(zip(cut[:-1].tolist(), cut[1:].tolist())):
        members = P[lo:hi]
        n_g = int(p_ng[members[0]])
        rows = g_rows_all[g_start[b]: g_start[b] + n_g]
        at = start[members][:, None] + np.arange(n_g)
        M, R = entry.iou[at], entry.pearson[at]
        r_idx, c_idx = linear_sum_assignment(-M)
        best_p, best_g = M.max(axis=1), M.max(axis=0)
        fp = np.setdiff1d(np.arange(members.size), r_idx)
        fn = np.setdiff1d(np.arange(n_g), c_idx)
        k = r_idx.size
        cols["kind"] += [np.full(k, KIND_MATCHED), np.full(fp.size, KIND_FP), np.full(fn.size, KIND_FN)]
        cols["key"].append(np.full(k + fp.size + fn.size, pkey[members[0]]))
        cols["within"].append(np.arange(k + fp.size + fn.size))
        cols["det"] += [preds.index[members[r_idx]], preds.index[members[fp]], np.full(fn.size, -1)]
        cols["gt"] += [gt.index[rows[c_idx]], np.full(fp.size, -1), gt.index[rows[fn]]]
        cols["score"] += [preds.score[members[r_idx]], preds.score[members[fp]], np.full(fn.size, np.nan)]
        cols["iou"] += [M[r_idx, c_idx], np.zeros(fp.size), np.zeros(fn.size)]
        cols["best"] += [best_p[r_idx], best_p[fp], best_g[fn]]
        cols["gt_best"] += [best_g[c_idx], np.full(fp.size, np.nan), best_g[fn]]
        cols["pearson"] += [R[r_idx, c_idx], np.full(fp.size, np.nan), np.full(fn.size, np.nan)]
    c = {k: np.concatenate(v) for k, v in cols.items()}
    rec.add(c["kind"], c["key"], c["within"], c["det"], c["gt"], c["score"], c["iou"], c["best"], c["gt_best"],
            c["pearson"])


def best_ious(preds: ClipAnnotations, gt: GTMaps, entry: PredIoUs | None) -> np.ndarray:
    """Best soft IoU (float64 of the float32 value) of each prediction with a GT of its bucket: the
    largest of its cached row, 0 in a bucket without GT (the match table's ``best_iou``)."""
    out = np.zeros(len(preds))
    has = np.flatnonzero(np.isin(preds.bucket(), gt.frame * 64 + gt.cls))
    if has.size:
        row = entry.find(preds.render_keys(has)) if entry is not None else np.full(has.size, -1)
        if (row < 0).any():
            raise RuntimeError("a prediction of a bucket with GT has no row in the entry (see update_rows)")
        n_g = entry.n_gt(row)  # >= 1: a bucket with GT
        vals = entry.iou[concat_ranges(entry.off[row], n_g)]
        out[has] = np.maximum.reduceat(vals, np.cumsum(n_g) - n_g).astype(np.float64)
    return out


def score_clip_fast(clip: str, preds, gt: GTMaps, known: PredIoUs | None = None) -> tuple[dict, PredIoUs | None]:
    """(records, entry): the clip's records, identical to
    :func:`calib.score.reference.score_clip_reference`'s, and ``known`` with the rows computed
    here added. ``preds``: :class:`ClipAnnotations` or a list of annotations; ``gt`` must hold
    the maps of the GT rows in buckets of predictions missing from ``known``
    (:func:`gt_rows_to_render`)."""
    if not isinstance(preds, ClipAnnotations):
        preds = ClipAnnotations.from_annotations(preds)
    _, miss = missing_rows(preds, gt, known)
    if gt_rows_to_render(preds, gt, miss).any():
        raise ValueError(f"clip {clip}: GT maps needed by its predictions are not rendered")
    entry, _, _ = update_rows(preds, gt, known, miss)
    return clip_records(preds, gt, entry), entry
