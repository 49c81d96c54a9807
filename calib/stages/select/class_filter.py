"""``class_filter``: keep only the classes a system is reliable on."""
from __future__ import annotations

import math

import polars as pl

from calib.constants import N_CLASSES, PROTOCOLS
from calib.stages.base import Param, Rule, Stage, Tables, declare, register


def per_class_ap(detections: pl.DataFrame, truth: pl.DataFrame, protocol: str = "dcase2026") -> dict[int, float]:
    """Per-class mAP of ``detections`` against ``truth`` under the official ``protocol`` (NaN for a
    class without truth)."""
    from calib.score.facade import score_against

    return dict(enumerate(score_against(detections, truth, protocol=protocol, with_matches=False).class_ap.tolist()))


def top_classes(ap: dict[int, float], k: int) -> list[int]:
    """The ``k`` classes with the highest AP (NaN last; ties to the lower class id), sorted."""
    ranked = sorted(ap, key=lambda c: (math.isnan(ap[c]), -ap[c] if not math.isnan(ap[c]) else 0.0, c))
    return sorted(c for c in ranked[:k] if not math.isnan(ap[c]))


@register("class_filter")
class ClassFilter(Stage):
    """Keep only the K classes most reliable on dev (per-class AP learned in fit), or given classes.

    With ``classes`` empty, fit scores the detections against the ``truth`` table (``protocol``) and
    keeps the ``k`` classes with the highest per-class AP (classes without truth never qualify);
    with ``classes`` given, those are kept and fit needs no truth. apply drops every other class."""

    needs_tables = ("detections", "truth")
    needs_columns = ("class_id",)
    learns = True
    learned_attributes = {"ap_": dict, "classes_": list}

    PARAMS = declare(
        k=Param(int, 5, "how many classes to keep: those with the highest dev AP (when classes is empty)",
                unit="classes", ge=1),
        classes=Param(list, [], "class ids to keep as given (empty: learn the k best in fit)",
                      item=Rule(int, ge=0, le=N_CLASSES - 1)),
        protocol=Param(str, "dcase2026", "the scoring protocol of the per-class AP learned in fit", choices=PROTOCOLS),
    )

    def fit(self, tables: Tables) -> "ClassFilter":
        self.check_params()
        if self.classes:
            self.ap_ = {}
            self.classes_ = sorted({int(c) for c in self.classes})
            return self
        self.ap_ = per_class_ap(tables["detections"], tables["truth"], self.protocol)
        self.classes_ = top_classes(self.ap_, int(self.k))
        return self

    def apply(self, tables: Tables) -> Tables:
        if not hasattr(self, "classes_"):
            raise RuntimeError("class_filter: call fit before apply (it learns which classes to keep)")
        df = tables["detections"]
        return tables.replace(detections=df.filter(pl.col("class_id").is_in(self.classes_)))
