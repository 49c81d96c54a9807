"""Checkpoint ensembles for direction outputs: cluster the directions of many checkpoints."""
from __future__ import annotations

import numpy as np
import polars as pl
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from calib.canvas.points import points_column
from calib.canvas.sphere import pairwise_great_circle, to_canvas, unit_vectors, vector_directions
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.emit.gaussian import gaussian_blobs
from calib.stages.fuse._common import empty_detections, peak_directions, point_polygons, renumber, with_score_raw

LINKAGES = ("single", "complete", "average")
EMITS = ("point", "mask", "gaussian")
GROUP = ["clip", "frame", "class_id"]
OUT_EXTRA = {"score_raw": pl.Float64, "fuse_support": pl.Int64}
#: the clustering parameters checkpoint_cluster and acs_views share
CLUSTER_PARAMS = declare(
    threshold_deg=Param(float, 20.0, "directions closer than this (great-circle) cluster together (the linkage's "
                        "cut)", unit="degrees", ge=0, le=180),
    min_support=Param(int, 1, "clusters supported by fewer sources are dropped", unit="sources", ge=1),
    linkage=Param(str, "average", "hierarchical clustering linkage ('average': separated sources do not chain "
                  "into one)", choices=LINKAGES),
    emit=Param(str, "point", "what a cluster becomes: one 'point' (render it with a later gaussian stage), a "
               "'gaussian' blob of width sigma_deg, or the best member's 'mask'", choices=EMITS),
    sigma_deg=Param(float, 8.0, "width of the blob when emit = 'gaussian'", unit="degrees", gt=0),
)


def cluster_labels(az: np.ndarray, el: np.ndarray, group_starts: np.ndarray, threshold_deg: float,
                   method: str) -> np.ndarray:
    """Cluster id (0..) of each direction; directions are clustered within consecutive groups
    (``group_starts`` = first row of each group) by hierarchical clustering on great-circle
    distance, cut at ``threshold_deg``. Deterministic: ids follow group order, then scipy's."""
    labels = np.zeros(len(az), dtype=np.int64)
    bounds = np.append(group_starts, len(az))
    next_id = 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a == 1:
            labels[a] = next_id
            next_id += 1
            continue
        d = pairwise_great_circle(az[a:b], el[a:b])
        np.fill_diagonal(d, 0.0)
        tree = linkage(squareform(np.maximum(d, d.T), checks=False), method=method)
        local = fcluster(tree, t=float(threshold_deg), criterion="distance")
        _, local = np.unique(local, return_inverse=True)
        labels[a:b] = next_id + local
        next_id += int(local.max()) + 1
    return labels


def cluster_sources(det: pl.DataFrame, source: str, *, threshold_deg: float, min_support: int,
                    n_sources: int, method: str, system_name: str, emit: str = "point",
                    sigma_deg: float = 8.0) -> pl.DataFrame:
    """Directions of one class and frame from several sources (checkpoints, views) grouped into
    clusters; each cluster with at least ``min_support`` distinct sources becomes one detection at
    the mean direction, its score the sum over its sources of their best member score divided by
    ``n_sources`` (the mean score weighted by support). ``emit``: "point" gives one point
    (intensity 1) at the mean direction, "gaussian" a spherical-Gaussian blob there
    (calib.stages.emit.gaussian.gaussian_points, width ``sigma_deg``), "mask" the mask of the
    cluster's best-scoring member."""
    if det.height == 0:
        return empty_detections(OUT_EXTRA)
    det = peak_directions(with_score_raw(det)).drop_nulls("peak_az").sort(GROUP + [source, "det_id"])
    if det.height == 0:
        return empty_detections(OUT_EXTRA)
    starts = (det.with_row_index("_i").group_by(GROUP).agg(pl.col("_i").min())
              .get_column("_i").sort().to_numpy().astype(np.int64))
    az, el = det.get_column("peak_az").to_numpy(), det.get_column("peak_el").to_numpy()
    u = unit_vectors(az, el)
    det = det.with_columns(pl.Series("_cluster", cluster_labels(az, el, starts, threshold_deg, method)),
                           pl.Series("_ux", u[:, 0]), pl.Series("_uy", u[:, 1]), pl.Series("_uz", u[:, 2]))
    best_member = (det.sort(["score", "det_id"], descending=[True, False])
                   .unique("_cluster", keep="first").select("_cluster", pl.col("points").alias("_mask")))
    per_source = det.group_by(["_cluster", source]).agg(pl.col("score").max().alias("_best"))
    clusters = (det.group_by("_cluster").agg(
        pl.col("clip", "frame", "class_id").first(),
        pl.col("_ux", "_uy", "_uz").sum(),
        pl.col("score_raw").mean(),
        pl.col("distance").mean(),
        pl.col(source).n_unique().cast(pl.Int64).alias("fuse_support"))
        .join(per_source.group_by("_cluster").agg(pl.col("_best").sum().alias("score")), on="_cluster")
        .filter(pl.col("fuse_support") >= int(min_support))
        .join(best_member, on="_cluster")
        .sort("_cluster"))
    vec = clusters.select("_ux", "_uy", "_uz").to_numpy()
    m_az, m_el = vector_directions(vec)
    x, y = to_canvas(m_az, m_el)
    out = clusters.with_columns(
        (pl.col("score") / float(n_sources)).alias("score"),
        _emitted(emit, m_az, m_el, x, y, sigma_deg),
        pl.lit(None, pl.Int64).alias("instance_id"),
        pl.lit(None, pl.String).alias("extra"),
    )
    out = renumber(out.with_columns(pl.lit(0, pl.Int64).alias("det_id")), system_name,
                   ["clip", "frame", "class_id", "_cluster"])
    return out.select(list(empty_detections(OUT_EXTRA).columns))


def _emitted(emit: str, az, el, x, y, sigma_deg: float):
    if emit == "point":
        return point_polygons(x, y)
    if emit == "mask":
        return pl.col("_mask").alias("points")
    return points_column(gaussian_blobs(az, el, sigma_deg))


def resolve_sources(det: pl.DataFrame, source_column: str, n_sources: int) -> tuple[str, int]:
    if source_column == "auto":
        source_column = "checkpoint" if "checkpoint" in det.columns else "system"
    if source_column not in det.columns:
        raise ValueError(f"no column {source_column!r} naming the source of each detection "
                         f"(have {det.columns})")
    n = int(n_sources) if n_sources else det.get_column(source_column).n_unique()
    return source_column, max(n, 1)


@register("checkpoint_cluster")
class CheckpointCluster(Stage):
    """Fuse directions from many checkpoints: cluster by great-circle proximity, keep clusters
    that enough checkpoints support, emit one direction per cluster.

    Within a clip, frame and class, each detection's direction is its peak point. Directions are
    grouped by hierarchical clustering (``linkage``: "average" by default, so separated sources do
    not chain into one) on great-circle distance cut at ``threshold_deg``; a cluster whose members
    come from fewer than ``min_support`` distinct checkpoints is dropped, so overlapping
    same-class events each survive when well supported. A kept cluster is one detection at the
    mean direction on the sphere, score = sum over its checkpoints of their best member's score /
    ``n_sources`` (0: the number of checkpoints seen in the input), ``fuse_support`` = its
    checkpoint count. ``emit``: "point" gives one point per direction (intensity 1; a later
    ``gaussian`` emitter stage can render it), "gaussian" renders it here with the spherical-
    Gaussian emitter (``sigma_deg``, the emitter's other defaults), "mask" keeps the mask of the
    cluster's best-scoring member.

    ``source_column``: the column naming the checkpoint ("auto": ``checkpoint`` when present,
    else ``system``).
    """

    needs_tables = ("detections",)
    needs_columns = ("clip", "frame", "class_id", "score", "points")
    adds_columns = ("score_raw", "fuse_support")

    PARAMS = declare(
        threshold_deg=CLUSTER_PARAMS["threshold_deg"],
        min_support=CLUSTER_PARAMS["min_support"].but(default=4, unit="checkpoints", meaning=(
            "clusters whose members come from fewer distinct checkpoints are dropped")),
        n_sources=Param(int, 0, "the score divisor: a cluster scores the sum of its checkpoints' best scores / "
                        "n_sources (0: the number of checkpoints in the input)", unit="checkpoints", ge=0),
        source_column=Param(str, "auto", "the column naming each detection's checkpoint ('auto': checkpoint when "
                            "present, else system)"),
        linkage=CLUSTER_PARAMS["linkage"],
        emit=CLUSTER_PARAMS["emit"],
        sigma_deg=CLUSTER_PARAMS["sigma_deg"],
        system_name=Param(str, "checkpoint_cluster", "the system name of the fused detections"),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        det = tables["detections"]
        source, n = resolve_sources(det, self.source_column, self.n_sources)
        out = cluster_sources(det, source, threshold_deg=self.threshold_deg, min_support=self.min_support,
                              n_sources=n, method=self.linkage, system_name=self.system_name, emit=self.emit,
                              sigma_deg=self.sigma_deg)
        return tables.replace(detections=out)

