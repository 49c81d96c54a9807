"""Teacher count prior: no more detections of a class in a frame than the teacher finds there."""
from __future__ import annotations

import polars as pl

from calib.stages.base import Param, Stage, Tables, declare, register

UNKNOWN_CLIPS = ("keep", "drop")


@register("teacher_count")
class TeacherCount(Stage):
    """Per clip, frame and class keep the ``n_teacher + extra`` highest-scoring detections.

    ``n_teacher`` counts the teacher's outputs (SELD CSV rows) of that clip, frame and class, so a
    class the teacher does not hear in a frame loses its detections there (unless ``extra`` > 0).
    Ties in score keep the lower det_id. A clip absent from the teacher table altogether is
    left as it is (``unknown_clips = "keep"``) or emptied (``"drop"``). Rows keep their order.
    """

    needs_tables = ("detections", "teacher")
    needs_columns = ("clip", "frame", "class_id", "score", "det_id")
    adds_columns = ()

    PARAMS = declare(
        extra=Param(int, 0, "detections kept beyond the teacher's count, per clip, frame and class",
                    unit="detections", ge=0),
        unknown_clips=Param(str, "keep", "a clip absent from the teacher table: 'keep' it as it is or 'drop' its "
                            "detections", choices=UNKNOWN_CLIPS),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        det, teacher = tables["detections"], tables["teacher"]
        keys = ["clip", "frame", "class_id"]
        counts = teacher.group_by(keys).agg(pl.len().cast(pl.Int64).alias("_n_teacher"))
        known = teacher.select(pl.col("clip").unique(), pl.lit(True).alias("_known"))
        rank = (pl.int_range(pl.len(), dtype=pl.Int64)
                .sort_by([pl.col("score"), pl.col("det_id")], descending=[True, False])
                .arg_sort().over(keys))
        allowed = pl.col("_n_teacher").fill_null(0) + int(self.extra)
        keep = pl.col("_rank") < allowed
        if self.unknown_clips == "keep":
            keep = keep | pl.col("_known").is_null()
        out = (det.join(counts, on=keys, how="left", maintain_order="left")
               .join(known, on="clip", how="left", maintain_order="left")
               .with_columns(rank.alias("_rank"))
               .filter(keep)
               .drop("_n_teacher", "_known", "_rank"))
        return tables.replace(detections=out)
