"""Teacher-prior relabeling: take the class of the nearest SELD teacher output of the frame."""
from __future__ import annotations

import numpy as np
import polars as pl

from calib.canvas.sphere import great_circle
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.fuse._common import peak_directions


@register("teacher_relabel")
class TeacherRelabel(Stage):
    """Relabel a detection with the class of the nearest teacher direction within a threshold.

    A detection's direction is its peak point (first point with the largest intensity). Among the
    teacher outputs of the same clip and frame (any class), the nearest by great-circle distance
    gives its class when it lies within ``threshold_deg``; the mask and score stay. Ties go to the
    lower class id. The original class is kept in ``fuse_class_raw`` (set once, never overwritten)
    and the distance to the nearest teacher output in ``fuse_teacher_deg`` (null without one).
    """

    needs_tables = ("detections", "teacher")
    needs_columns = ("clip", "frame", "class_id", "points")
    adds_columns = ("fuse_class_raw", "fuse_teacher_deg")

    PARAMS = declare(
        threshold_deg=Param(float, 20.0, "the nearest teacher direction relabels a detection when it is at most "
                            "this far (great-circle)", unit="degrees", ge=0, le=180),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        det = tables["detections"]
        if "fuse_class_raw" not in det.columns:
            det = det.with_columns(pl.col("class_id").alias("fuse_class_raw"))
        det = det.drop("fuse_teacher_deg", strict=False)
        nearest = nearest_teacher(det, tables["teacher"])
        within = pl.col("fuse_teacher_deg") <= float(self.threshold_deg)
        out = (det.with_columns(nearest)
               .with_columns(pl.when(within).then(pl.col("teacher_class")).otherwise(pl.col("class_id"))
                             .alias("class_id"))
               .drop("teacher_class"))
        return tables.replace(detections=out)


def nearest_teacher(det: pl.DataFrame, teacher: pl.DataFrame) -> list[pl.Series]:
    """For each detection: ``fuse_teacher_deg`` (distance of its peak to the nearest teacher
    direction of its clip and frame) and ``teacher_class`` (that output's class), null when the
    frame has no teacher output or the detection no points."""
    peaks = (peak_directions(det.select("clip", "frame", "points")).with_row_index("row")
             .drop("points").drop_nulls("peak_az"))
    pairs = peaks.join(teacher.select("clip", "frame", pl.col("class_id").alias("teacher_class"),
                                      "azimuth", "elevation"), on=["clip", "frame"], how="inner")
    dist = great_circle(pairs.get_column("peak_az").to_numpy(), pairs.get_column("peak_el").to_numpy(),
                        pairs.get_column("azimuth").to_numpy(), pairs.get_column("elevation").to_numpy())
    best = (pairs.with_columns(pl.Series("fuse_teacher_deg", np.asarray(dist, dtype=np.float64)))
            .sort(["row", "fuse_teacher_deg", "teacher_class"])
            .unique("row", keep="first", maintain_order=True))
    full = (pl.DataFrame({"row": np.arange(det.height, dtype=np.uint32)})
            .join(best.select("row", "fuse_teacher_deg", "teacher_class"), on="row", how="left", maintain_order="left"))
    return [full.get_column("fuse_teacher_deg"), full.get_column("teacher_class")]
