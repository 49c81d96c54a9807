"""Prior score fusion: weight each detection by the clip-level class prior of its frame."""
from __future__ import annotations

import polars as pl

from calib.io.priors import priors_per_frame
from calib.stages.base import Param, Rule, Stage, Tables, declare, register
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

    ``alpha`` is the exponent on the prior (per class in ``class_alpha``); ``floor`` bounds p from
    below so a confident prior of 0 cannot erase a detection; ``missing`` says what happens to a
    detection whose frame no prior window covers.
    """

    needs_tables = ("detections", "priors")
    needs_columns = ("clip", "frame", "class_id", "score")
    adds_columns = ("score_raw", "score_prior")

    PARAMS = declare(
        alpha=Param(float, 0.5, "exponent on the prior: 0 leaves scores unchanged, 1 multiplies them by the prior",
                    ge=0),
        class_alpha=Param(dict, {}, "per-class exponents overriding alpha, class id -> exponent (e.g. {\"3\" = 1.0})",
                          keys="class", item=Rule(float, ge=0)),
        floor=Param(float, 0.0, "lower bound on the prior, so a confident prior of 0 cannot erase a detection",
                    unit="probability", ge=0, le=1),
        missing=Param(str, "keep", "a detection whose frame no prior window covers: 'keep' its score, use the "
                      "'floor' as its prior, or raise an 'error'", choices=MISSING),
    )

    def class_alphas(self) -> dict[int, float]:
        """``class_alpha`` keyed by class id (TOML writes the keys as strings)."""
        return {k: float(v) for k, v in check_class_keys(self.class_alpha, "prior_fusion class_alpha").items()}

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        per_class = self.class_alphas()
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
