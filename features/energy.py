"""Energy features: how the intensities of an annotation's points are distributed.

Intensities are the third value of each point. Distribution features (top-10% share, entropy)
treat negative intensities as 0. An annotation without points gets 0 everywhere."""
from __future__ import annotations

import numpy as np

from features.registry import FeatureContext, feature


def _count(ctx: FeatureContext) -> np.ndarray:
    return ctx.points.count.astype(np.float64)


def _mean(ctx: FeatureContext) -> np.ndarray:
    def compute():
        c = _count(ctx)
        return np.divide(ctx.points.sum(ctx.points.e), c, out=np.zeros(ctx.n), where=c > 0)
    return ctx.cached("energy_mean", compute)


def _max(ctx: FeatureContext) -> np.ndarray:
    return ctx.cached("energy_max", lambda: ctx.points.reduce(np.maximum, ctx.points.e, empty=0.0))


def peak_index(ctx: FeatureContext) -> np.ndarray:
    """Point index of each annotation's first point with the largest intensity (-1 without points)."""
    return ctx.cached("peak_index", lambda: ctx.points.first_argmax(ctx.points.e))


@feature(per_clip=True)
def energy_max(ctx: FeatureContext) -> np.ndarray:
    """Largest point intensity of the annotation."""
    return _max(ctx)


@feature(per_clip=True)
def energy_mean(ctx: FeatureContext) -> np.ndarray:
    """Mean point intensity of the annotation."""
    return _mean(ctx)


@feature(per_clip=True)
def energy_std(ctx: FeatureContext) -> np.ndarray:
    """Population standard deviation of the annotation's point intensities."""
    p = ctx.points
    c = _count(ctx)
    dev = p.e - _mean(ctx)[p.row]
    var = np.divide(p.sum(dev * dev), c, out=np.zeros(ctx.n), where=c > 0)
    return np.sqrt(var)


@feature(per_clip=True)
def energy_prominence(ctx: FeatureContext) -> np.ndarray:
    """Peak prominence: largest intensity minus mean intensity (0 for a flat annotation)."""
    return _max(ctx) - _mean(ctx)


@feature(per_clip=True)
def energy_peak_ratio(ctx: FeatureContext) -> np.ndarray:
    """Scale-free prominence: (max - mean) / max of the intensities, 0 for a flat map, near 1 for
    a sharp peak over a low floor; 0 when the largest intensity is not positive."""
    mx = _max(ctx)
    return np.divide(mx - _mean(ctx), mx, out=np.zeros(ctx.n), where=mx > 0)


#: points per block of the per-point work of the distribution features (their temporaries, about
#: ten arrays of 8 bytes a point, stay near 100 MB whatever the number of detections)
BLOCK_POINTS = 1 << 20


def _top10_sum(p, e: np.ndarray) -> np.ndarray:
    """Sum of each detection's ceil(0.1 n) largest values of ``e`` (laid out like ``p``'s points)."""
    # up to 10 points the top 10% is the single largest; only longer runs need sorting
    top_sum = p.reduce(np.maximum, e, empty=0.0)
    long = p.count > 10
    if long.any():
        sub, pos = p.select(long)
        el = e[pos]
        # each run sorted by decreasing intensity: one sort of the intensities gives every point a
        # distinct rank (ties in any order: they add up the same), then one integer sort of
        # (run, rank) keeps runs in place
        by_e = np.empty(el.size, np.int64)
        by_e[np.argsort(-el)] = np.arange(el.size)
        es = el[np.argsort(sub.row * el.size + by_e)]
        rank = np.arange(es.size) - sub.start[sub.row]
        top = rank < np.ceil(0.1 * sub.count)[sub.row]
        top_sum[long] = np.bincount(sub.row[top], weights=es[top], minlength=sub.n)
    return top_sum


@feature(per_clip=True)
def energy_top10_share(ctx: FeatureContext) -> np.ndarray:
    """Concentration: share of the annotation's total (non-negative) intensity held by its top 10%
    of points (the ceil(0.1 n) most intense); 1 for a single point, 0 when the total is 0."""
    p = ctx.points
    e = np.clip(p.e, 0.0, None)
    total = p.sum(e)
    # block by block of detections (each detection's values and sums are its own, so the result
    # is the same): the sort's temporaries are those of a block, not of every point
    top_sum = np.zeros(ctx.n)
    for a, b in p.blocks(BLOCK_POINTS):
        block = p.slice(a, b)
        first = int(p.poly_off[p.det_off[a]])  # the block's first point
        top_sum[a:b] = _top10_sum(block, e[first: first + block.n_points])
    return np.divide(top_sum, total, out=np.zeros(ctx.n), where=total > 0)


def _entropy(pts) -> np.ndarray:
    e = np.clip(pts.e, 0.0, None)
    total = pts.sum(e)
    denom = total[pts.row]
    prob = np.divide(e, denom, out=np.zeros_like(e), where=denom > 0)
    plogp = np.where(prob > 0, prob * np.log(np.where(prob > 0, prob, 1.0)), 0.0)
    h = -pts.sum(plogp)
    logn = np.log(np.maximum(pts.count, 1).astype(np.float64))
    ok = (pts.count > 1) & (total > 0)
    return np.divide(h, logn, out=np.zeros(pts.n), where=ok)


@feature(per_clip=True)
def energy_entropy(ctx: FeatureContext) -> np.ndarray:
    """Normalised entropy of the intensities seen as a distribution over the points:
    -sum(p log p) / log(n) with p = e / sum(e); 1 for perfectly even energy, near 0 for one
    dominant point; 0 for fewer than 2 points or zero total."""
    pts = ctx.points
    # block by block of detections (per-point work, per-detection sums: the same values), so the
    # temporaries are those of a block
    out = np.zeros(ctx.n)
    for a, b in pts.blocks(BLOCK_POINTS):
        out[a:b] = _entropy(pts.slice(a, b))
    return out


@feature(per_clip=True)
def peak_offset(ctx: FeatureContext) -> np.ndarray:
    """Distance of the peak (first point with the largest intensity) from the centre of the
    seam-aware bounding box, divided by half the box diagonal: 0 at the centre, 1 at a corner;
    0 for a box of zero size."""
    p = ctx.points
    nonempty = p.count > 0
    out = np.zeros(ctx.n)
    if not nonempty.any():
        return out
    peak = peak_index(ctx)[nonempty]
    b = ctx.box
    dx = p.seam_x[peak] - b.cx[nonempty]
    dy = p.y[peak] - b.cy[nonempty]
    half_diag = 0.5 * np.hypot(b.w[nonempty], b.h[nonempty])
    out[nonempty] = np.divide(np.hypot(dx, dy), half_diag, out=np.zeros(peak.size), where=half_diag > 0)
    return out
