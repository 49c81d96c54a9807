"""Mask-aware weighted fusion of several systems' detections (a soft-IoU analogue of weighted
boxes fusion on the energy maps)."""
from __future__ import annotations

import numpy as np
import polars as pl
from scipy import ndimage
from threadpoolctl import threadpool_limits

from calib.canvas.points import flatten, polygons_series
from calib.canvas.sphere import box_iou, boxes
from calib.score.render import H, W
from calib.score.render import render_annotation as official_render
from calib.stages.base import Param, Rule, Stage, Tables, declare, register
from calib.stages.fuse._common import empty_detections, renumber, stack_systems

GROUP = ["clip", "frame", "class_id"]
OUT_EXTRA = {"score_raw": pl.Float64, "fuse_support": pl.Int64, "fuse_source": pl.String}
PIXEL_DEG = 360.0 / W  # one map pixel is 3.6 degrees both ways (100 x 50 over 360 x 180)
# A map is non-zero only on pixels within its points' bounding box rounded to the 3.6-degree grid,
# so boxes grown by more than a pixel that do not meet cannot give a soft IoU above 0.
BOX_MARGIN_DEG = 4.0
_EIGHT = np.ones((3, 3), dtype=bool)


def render_map(polygons) -> np.ndarray:
    """A detection's official dcase2026 100 x 50 energy map (calib.score.render), flattened, float32."""
    return official_render(polygons)[0].astype(np.float32).ravel()


def soft_iou(maps: np.ndarray, one: np.ndarray) -> np.ndarray:
    """Soft IoU (sum of min / sum of max, float32 sums, 0 for an empty union) of each row of
    ``maps`` (n, H*W) with ``one`` (H*W)."""
    inter = np.minimum(maps, one).sum(axis=-1, dtype=np.float32)
    union = np.maximum(maps, one).sum(axis=-1, dtype=np.float32)
    return np.where(union < 1e-8, np.float32(0.0), inter / np.maximum(union, np.float32(1e-30)))


def greedy_clusters(maps: np.ndarray, weights: np.ndarray, sources: np.ndarray,
                    iou_threshold: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Cluster members taken in the given order (best score first): each joins the cluster whose
    fused map it overlaps most (soft IoU >= ``iou_threshold``) among clusters holding no member of
    its source yet, or opens a new one. A cluster's fused map is the ``weights``-weighted mean of
    its members' maps (weights = system weight x score). Returns (cluster of each member, fused
    maps)."""
    labels = np.full(len(maps), -1, dtype=np.int64)
    sums: list[np.ndarray] = []
    wsum: list[float] = []
    fused: list[np.ndarray] = []
    members: list[set] = []
    for i in range(len(maps)):
        best, best_iou = -1, -1.0
        if fused:
            ious = soft_iou(np.stack(fused), maps[i])
            for c in np.argsort(-ious, kind="stable"):
                if ious[c] < iou_threshold:
                    break
                if sources[i] not in members[c]:
                    best, best_iou = int(c), float(ious[c])
                    break
        if best < 0:
            best = len(fused)
            sums.append(np.zeros_like(maps[i], dtype=np.float64))
            wsum.append(0.0)
            fused.append(maps[i])
            members.append(set())
        labels[i] = best
        members[best].add(sources[i])
        sums[best] += weights[i] * maps[i]
        wsum[best] += weights[i]
        fused[best] = (sums[best] / wsum[best]).astype(np.float32) if wsum[best] > 0 else maps[i]
    return labels, fused


def map_polygons(amap: np.ndarray) -> list[np.ndarray]:
    """Re-emit a (H, W) energy map as points: one polygon per 8-connected blob of non-zero pixels,
    holding the blob's pixels and the ring of pixels around it (with the map's values there, zero
    off the support) so the official linear interpolation gives the map back without bleeding
    between blobs. Pixel (r, c) is the point (3.6 c, 3.6 r); columns wrap at the seam. Returns
    one (k, 3) array of x, y, e per polygon."""
    amap = np.asarray(amap, dtype=np.float64).reshape(H, W)
    blobs, n = ndimage.label(amap > 0, structure=_EIGHT)
    polygons = []
    for b in range(1, n + 1):
        # dilate on a canvas padded by one wrapped column each side, then fold the pads back
        grown = ndimage.binary_dilation(np.pad(blobs == b, ((0, 0), (1, 1)), mode="wrap"), structure=_EIGHT)
        ring = grown[:, 1:-1].copy()
        ring[:, W - 1] |= grown[:, 0]
        ring[:, 0] |= grown[:, -1]
        rows, cols = np.nonzero(ring)
        polygons.append(np.column_stack([cols * PIXEL_DEG, rows * PIXEL_DEG, amap[rows, cols]]))
    return polygons


@register("mask_fusion")
class MaskFusion(Stage):
    """Fuse several systems' detections whose energy maps overlap (soft IoU >= ``iou_threshold``).

    Within a clip, frame and class, detections are taken best score first; each joins the
    overlapping cluster (highest soft IoU with the cluster's fused map, at most one member per
    system) or opens one. A cluster of several members becomes one detection whose energy map is
    the score-weighted mean of the members' rendered 100 x 50 maps (re-emitted as points, one
    polygon per blob), with score = weighted mean of member scores x (systems in the cluster /
    systems) when ``count_weighting`` (that factor is the singleton penalty: a detection no other
    system confirms keeps 1/N of its score), else the weighted mean alone. A single-member cluster
    keeps its own mask; ``keep_singletons = false`` drops it. ``weights`` gives per-system weights
    (system name -> weight, default 1). Reads ``systems``; writes ``detections`` (system
    ``system_name``, det_id renumbered per clip, ``fuse_support`` = systems in the cluster,
    ``fuse_source`` = their names joined by "+", ``score_raw`` = mean of the members' raw scores).
    """

    needs_tables = ("systems",)
    needs_columns = ("clip", "frame", "class_id", "score", "points")
    adds_columns = ("score_raw", "fuse_support", "fuse_source")

    PARAMS = declare(
        iou_threshold=Param(float, 0.3, "detections join a cluster when the soft IoU of their energy maps reaches "
                            "this", unit="IoU", ge=0, le=1),
        count_weighting=Param(bool, True, "multiply a cluster's score by (systems in it / systems): a detection no "
                              "other system confirms keeps 1/N of its score"),
        keep_singletons=Param(bool, True, "keep detections no other system overlaps (with their own mask)"),
        weights=Param(dict, {}, "per-system weights, system name -> weight (default 1)", item=Rule(float, ge=0)),
        system_name=Param(str, "mask_fusion", "the system name of the fused detections"),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        systems = tables.systems
        unknown = sorted(set(self.weights) - set(systems))
        if unknown:
            raise ValueError(f"mask_fusion: weights for unknown system(s) {unknown}; systems are {sorted(systems)}")
        n_systems = max(len(systems), 1)
        weights = {k: float(v) for k, v in self.weights.items()}
        det = (stack_systems(systems).with_row_index("_order")
               .with_columns(pl.col("_order").cast(pl.Int64),
                             pl.col("fuse_source").replace_strict(weights, default=1.0, return_dtype=pl.Float64)
                             .alias("_w"),
                             pl.col("fuse_source").n_unique().over(GROUP).alias("_n_src")))
        # buckets one system fills alone need no rendering: every detection there is a singleton
        single = det.filter(pl.col("_n_src") == 1)
        multi = det.filter(pl.col("_n_src") > 1).sort(GROUP + ["score", "_order"],
                                                    descending=[False, False, False, True, False])
        # Qhull and the interpolation call BLAS on tiny arrays: more threads only contend
        with threadpool_limits(1, user_api="blas"):
            fused, kept = self._cluster(multi, n_systems)
        factor = 1.0 / n_systems if self.count_weighting else 1.0
        singles = (pl.concat([single, multi.filter(pl.col("_order").is_in(kept))])
                   .with_columns((pl.col("score") * factor).alias("score"), pl.lit(1, pl.Int64).alias("fuse_support")))
        cols = list(empty_detections(OUT_EXTRA).columns) + ["_order"]
        parts = ([singles.select(cols)] if self.keep_singletons else []) + [fused.select(cols)]
        out = pl.concat(parts, how="vertical_relaxed")
        out = renumber(out, self.system_name, ["clip", "frame", "class_id", "_order"]).drop("_order")
        return tables.replace(detections=out)

    def _cluster(self, multi: pl.DataFrame, n_systems: int) -> tuple[pl.DataFrame, list[int]]:
        """(fused detections of clusters with several members, ``_order`` of single-member
        clusters' rows) for the buckets several systems fill."""
        rows: list[dict] = []
        polygons: list[list[np.ndarray]] = []
        kept: list[int] = []
        if multi.height:
            order = multi.get_column("_order").to_numpy()
            flat = flatten(multi.get_column("points"))
            det_boxes = boxes(flat).rows() + np.array([-1.0, 1.0, -1.0, 1.0]) * BOX_MARGIN_DEG
            score = multi.get_column("score").to_numpy()
            raw = multi.get_column("score_raw").to_numpy()
            dist = multi.get_column("distance").to_numpy()
            w = multi.get_column("_w").to_numpy()
            src = multi.get_column("fuse_source").to_numpy()
            groups = (multi.with_row_index("_i").group_by(GROUP, maintain_order=True)
                      .agg(pl.col("_i").min().alias("_a"), pl.len().alias("_n")))
            for clip, frame, cls, a, n in groups.iter_rows():
                idx = np.arange(a, a + n)
                if self.iou_threshold > 0:
                    # members whose box meets no other system's box stay alone: no need to render them
                    near = (box_iou(det_boxes[idx], det_boxes[idx]) > 0) & (src[idx][:, None] != src[idx][None, :])
                    alone = ~near.any(axis=1)
                    kept.extend(int(order[i]) for i in idx[alone])
                    idx = idx[~alone]
                    if idx.size == 0:
                        continue
                maps = np.stack([render_map(flat.polygons(i)) for i in idx])
                labels, fused = greedy_clusters(maps, w[idx] * score[idx], src[idx], float(self.iou_threshold))
                for c in range(len(fused)):
                    m = idx[labels == c]
                    if len(m) == 1:
                        kept.append(int(order[m[0]]))
                        continue
                    wm = w[m]
                    mean_score = float(np.sum(wm * score[m]) / np.sum(wm)) if np.sum(wm) > 0 else float(score[m].mean())
                    support = len(set(src[m]))
                    d = dist[m].astype(np.float64)
                    d = d[np.isfinite(d)]
                    rows.append({"clip": clip, "frame": frame, "class_id": cls,
                                 "score": mean_score * (support / n_systems if self.count_weighting else 1.0),
                                 "score_raw": float(np.mean(raw[m])), "distance": float(d.mean()) if d.size else None,
                                 "fuse_support": support, "fuse_source": "+".join(sorted(set(src[m]))),
                                 "_order": int(order[m].min())})
                    polygons.append(map_polygons(fused[c]))
        schema = {"clip": pl.String, "frame": pl.Int64, "class_id": pl.Int64, "score": pl.Float64,
                  "score_raw": pl.Float64, "distance": pl.Float64, "fuse_support": pl.Int64,
                  "fuse_source": pl.String, "_order": pl.Int64}
        fused_df = pl.DataFrame(rows, schema=schema).with_columns(
            polygons_series(polygons), pl.lit("", pl.String).alias("system"), pl.lit(0, pl.Int64).alias("det_id"),
            pl.lit(None, pl.Int64).alias("instance_id"), pl.lit(None, pl.String).alias("extra"))
        # single-member clusters in shared buckets keep their mask; the singleton factor comes later
        return fused_df, kept
