"""``threshold``: keep detections whose score reaches a global or per-class threshold."""
from __future__ import annotations

import polars as pl

from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.select.common import class_map, keep_rows


@register("threshold")
class Threshold(Stage):
    """Keep detections whose score reaches a global or per-class threshold.

    Keeps rows whose ``column`` (score, or any score_* column) is >= the threshold of their class: ``per_class`` {class_id: threshold} where given, else ``threshold``. Null scores are dropped."""

    needs_columns = ("score",)
    cache_output = False  # a row selection: cheaper to redo than to store

    PARAMS = declare(
        threshold=Param(float, 0.0, "keep detections whose score reaches this (classes without a per_class value)",
                        unit="score"),
        per_class=Param(dict, {}, "per-class thresholds, class id -> threshold (e.g. {\"3\" = 0.4})", unit="score",
                        keys="class", item=float),
        column=Param(str, "score", "the score column compared (score or any score_* column)"),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        df = tables["detections"]
        if self.column not in df.columns:
            raise ValueError(f"threshold: no column {self.column!r} in the detections (have {df.columns})")
        per = {c: float(v) for c, v in class_map(self.per_class, "threshold: per_class").items()}
        thr = pl.col("class_id").replace_strict(per, default=float(self.threshold), return_dtype=pl.Float64) \
            if per else pl.lit(float(self.threshold))
        keep = df.select((pl.col(self.column).cast(pl.Float64).fill_nan(None) >= thr).fill_null(False)).to_series()
        # slices when the kept rows come in few runs (a low threshold keeps nearly everything)
        return tables.replace(detections=keep_rows(df, keep.to_numpy()))
