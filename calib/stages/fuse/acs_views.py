"""Test-time ACS view ensemble: map each channel-swap view's outputs back, then fuse them."""
from __future__ import annotations

import polars as pl

from calib.canvas.sphere import ACS_TRANSFORMS, acs_canvas_coefficients, transform_points
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.fuse._common import with_score_raw
from calib.stages.fuse.checkpoint_cluster import CLUSTER_PARAMS, cluster_sources

FUSES = ("cluster", "none")


def map_views_back(det: pl.DataFrame) -> pl.DataFrame:
    """Every detection's mask points moved by the inverse of its view's ACS transform
    (calib.canvas.sphere.ACS_TRANSFORMS); rows keep their order."""
    views = det.get_column("view")
    bad = det.filter(views.is_null() | ~views.is_in(list(range(len(ACS_TRANSFORMS)))))
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(f"acs_views: clip {row['clip']!r} frame {row['frame']} det_id {row['det_id']}: "
                         f"view {row['view']!r} outside 0..{len(ACS_TRANSFORMS) - 1}")
    det = det.with_row_index("_row")
    parts = [det.filter(pl.col("view") == k)
             .with_columns(transform_points(pl.col("points"), *acs_canvas_coefficients(k)).alias("points"))
             for k in range(len(ACS_TRANSFORMS))]
    return pl.concat(parts).sort("_row").drop("_row")


@register("acs_views")
class AcsViews(Stage):
    """Fuse the outputs of the 8 test-time ACS views of a tetrahedral MIC (or FOA) array.

    Detections carry their view in ``view`` (0..7, the index into calib.canvas.sphere.ACS_TRANSFORMS,
    the eight azimuth/elevation transforms of Mazzon et al. 2019). Each detection's mask points are
    mapped back with the inverse of its view's transform; then, with ``fuse = "cluster"``, the
    directions (peak points) of one clip, frame and class are clustered across views by
    great-circle proximity (``threshold_deg``, ``linkage``), clusters seen in fewer than
    ``min_support`` views are dropped and each cluster becomes one detection at the mean direction
    with score = sum over views of their best member's score / 8 (``emit``: "point" = one point,
    render it with a later ``gaussian`` emitter; "gaussian" = a spherical-Gaussian blob of width
    ``sigma_deg`` from that emitter; "mask" = the best member's mapped-back mask).
    ``fuse = "none"`` only maps back (rows, ``view`` and scores kept) for another fusion stage.
    """

    needs_tables = ("detections",)
    needs_columns = ("view", "clip", "frame", "class_id", "score", "points")
    adds_columns = ("score_raw", "fuse_support")

    PARAMS = declare(
        fuse=Param(str, "cluster", "'cluster' the views' directions into one detection per cluster, or 'none': only "
                   "map every view back (rows kept, for another fusion stage)", choices=FUSES),
        threshold_deg=CLUSTER_PARAMS["threshold_deg"],
        min_support=CLUSTER_PARAMS["min_support"].but(unit="views", meaning="clusters seen in fewer views are "
                                                      "dropped"),
        linkage=CLUSTER_PARAMS["linkage"],
        emit=CLUSTER_PARAMS["emit"],
        sigma_deg=CLUSTER_PARAMS["sigma_deg"],
        system_name=Param(str, "acs_views", "the system name of the fused detections"),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        det = tables["detections"]
        if "view" not in det.columns:
            raise ValueError("acs_views: the detections have no 'view' column (0..7, the ACS view of each row)")
        back = map_views_back(with_score_raw(det))
        if self.fuse == "none":
            out = back.with_columns(pl.lit(1, pl.Int64).alias("fuse_support"))
        else:
            out = cluster_sources(back, "view", threshold_deg=self.threshold_deg, min_support=self.min_support,
                                  n_sources=len(ACS_TRANSFORMS), method=self.linkage,
                                  system_name=self.system_name, emit=self.emit, sigma_deg=self.sigma_deg)
        return tables.replace(detections=out)
