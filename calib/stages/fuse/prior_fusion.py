"""Prior score fusion: weight each detection by the clip-level class prior of its frame."""
from __future__ import annotations

import polars as pl

from calib.io.priors import priors_per_frame
from calib.stages.base import Stage, Tables, register
from calib.stages.fuse._common import check_class_keys, with_score_raw

MISSING = ("keep", "floor", "error")


@register("prior_fusion")
class PriorFusion(Stage):
    """score <- score * max(p(class, frame), floor) ** alpha, p from the clip's prior windows.

    The priors table gives one probability per class for each window [start_frame, end_frame) of a
    clip (typically 2 s = 20 frames, the last window shorter at the clip end); every frame takes the
    prior of the window holding it (calib.io.priors.priors_per_frame; a later window wins where
    windows overlap). Mask, class and all other columns are untouched; the upstream score stays in
    ``score_raw`` and the prior used in ``score_prior`` (null where none covers the frame).

    Parameters
    - alpha: exponent on the prior (0 leaves scores unchanged, 1 multiplies by the prior).
    - class_alpha: per-class exponents overriding ``alpha``, e.g. {"3" = 1.0} (keys are class ids).
    - floor: lower bound on p, so a confident prior of 0 cannot erase a detection.
    - missing: a detection whose frame no prior window covers: "keep" its score, use the "floor"
      as its prior, or raise an "error".
    """

    needs_tables = ("detections", "priors")
    needs_columns = ("clip", "frame", "class_id", "score")
    adds_columns = ("score_raw", "score_prior")

    def __init__(self, *, alpha: float = 0.5, class_alpha: dict = {}, floor: float = 0.0,  # noqa: B006
                 missing: str = "keep"):
        self.alpha = alpha
        self.class_alpha = class_alpha
        self.floor = floor
        self.missing = missing

    def _check(self) -> dict[int, float]:
        per_class = {k: float(v) for k, v in check_class_keys(self.class_alpha, "prior_fusion class_alpha").items()}
        if min([float(self.alpha), *per_class.values()]) < 0:
            raise ValueError("prior_fusion: alpha must be >= 0")
        if not 0.0 <= float(self.floor) <= 1.0:
            raise ValueError(f"prior_fusion: floor {self.floor} outside [0, 1]")
        if self.missing not in MISSING:
            raise ValueError(f"prior_fusion: missing={self.missing!r}, expected one of {MISSING}")
        return per_class

    def apply(self, tables: Tables) -> Tables:
        per_class = self._check()
        det = with_score_raw(tables["detections"]).drop("score_prior", strict=False)
        prior = priors_per_frame(tables["priors"]).rename({"prior": "score_prior"})
        det = det.join(prior, on=["clip", "frame", "class_id"], how="left", maintain_order="left")
        if self.missing == "error" and det.get_column("score_prior").null_count():
            row = det.filter(pl.col("score_prior").is_null()).row(0, named=True)
            raise ValueError(f"prior_fusion: no prior window covers clip {row['clip']!r} frame {row['frame']} "
                             f"(detection det_id {row['det_id']})")
        alpha = pl.col("class_id").replace_strict(per_class, default=float(self.alpha), return_dtype=pl.Float64)
        p = pl.max_horizontal(pl.col("score_prior"), pl.lit(float(self.floor)))
        if self.missing == "keep":
            p = pl.when(pl.col("score_prior").is_null()).then(1.0).otherwise(p)
        return tables.replace(detections=det.with_columns((pl.col("score") * p.pow(alpha)).alias("score")))
