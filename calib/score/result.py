"""What scoring gives back: :class:`ScoreResult`, the official metrics with a protocol-independent view.

The official scripts name their numbers differently per protocol (dcase2026: ``macro_mAP``,
``macro_pearson_r``, ``per_class[<class name>]``; dcase2026-coco: ``mask_mAP``, ``pearson_r``,
``per_class_mAP[<class id>]``). A :class:`ScoreResult` keeps those keys untouched (it *is* the
official metrics dict, so metrics.json and the golden comparisons read it as the scripts wrote it)
and adds the view every caller compares: :attr:`~ScoreResult.headline`, :attr:`~ScoreResult.pearson`,
per-class AP and Pearson by class id. :meth:`ScoreResult.of` gives the same view of a plain metrics
dict (a custom recipe scorer's, or metrics read back from JSON, where NaN is null).
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import polars as pl

from calib.constants import CLASS_NAMES, N_CLASSES, PROTOCOLS

#: per protocol: (headline key, Pearson key)
HEADLINE_KEYS = {"dcase2026": ("macro_mAP", "macro_pearson_r"), "dcase2026-coco": ("mask_mAP", "pearson_r")}


def _num(v) -> float:
    return math.nan if v is None else float(v)


class ScoreResult(dict):
    """The official metrics (a dict with the script's keys) plus what calib adds:

    ``protocol``: the protocol that produced them; ``matches``: one row per prediction record
    (polars DataFrame) or None; ``gt_matches``: one row per GT annotation with its best same-class
    prediction IoU; ``recall_ceiling``: fraction of GT whose best same-class prediction of its frame
    reaches each soft IoU level whatever the scores; ``skipped``: prediction clips without ground
    truth; ``unscored_gt``: GT clips of a folder without a prediction file, not scored (as the
    official scripts do); ``tie_order_range`` (dcase2026): macro and micro mAP under each tie order
    and their [min, max] (:func:`calib.score.aggregate.tie_order_range`; metrics.json carries it
    under that key).

    Whatever the protocol: :attr:`headline` (macro_mAP or mask_mAP), :attr:`pearson`,
    :attr:`class_ap` / :attr:`class_pearson` (13 values by class id), :attr:`per_class_ap` (the
    classes the metrics list), :meth:`class_table`, :meth:`summary`; :attr:`metrics` is the raw dict."""

    protocol: str | None = None
    matches: pl.DataFrame | None = None
    gt_matches: pl.DataFrame | None = None
    recall_ceiling: dict | None = None
    skipped: list[str] = []
    unscored_gt: list[str] = []
    details: dict | None = None  # coco protocol: n_distance_pairs, pairs (the peak-matched pairs, a DataFrame)
    tie_order_range: dict | None = None
    #: dcase2026 fast engine: how the work was done: pool (bool: clips ran in a pool),
    #: estimated_seconds (the in-process estimate the pool decision used, None when jobs=1),
    #: maps_rendered (prediction maps rendered: 0 when every row came from the cache)
    work: dict | None = None

    @classmethod
    def of(cls, metrics: Mapping | None, protocol: str | None = None) -> "ScoreResult":
        """``metrics`` (an official metrics dict, None or empty: not scored) as a ScoreResult; a
        ScoreResult is returned as it is. ``protocol``: when None, told by the keys."""
        if isinstance(metrics, ScoreResult) and protocol in (None, metrics.protocol):
            return metrics
        if protocol is not None and protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
        res = cls(metrics or {})
        res.protocol = protocol
        return res

    @property
    def metrics(self) -> dict:
        """The official metrics as a plain dict."""
        return dict(self)

    @property
    def kind(self) -> str | None:
        """The protocol whose keys the metrics hold (``protocol`` when they hold neither's headline)."""
        if "macro_mAP" in self:
            return "dcase2026"
        if "mask_mAP" in self:
            return "dcase2026-coco"
        return self.protocol

    @property
    def headline(self) -> float:
        """The protocol's headline mAP (dcase2026: macro_mAP; dcase2026-coco: mask_mAP); NaN when not scored."""
        keys = HEADLINE_KEYS.get(self.kind)
        return math.nan if keys is None else _num(self.get(keys[0]))

    @property
    def pearson(self) -> float:
        """The protocol's Pearson r (dcase2026: macro_pearson_r; dcase2026-coco: pearson_r); NaN when none."""
        keys = HEADLINE_KEYS.get(self.kind)
        return math.nan if keys is None else _num(self.get(keys[1]))

    @property
    def per_class_ap(self) -> dict[int, float]:
        """{class id: AP} of the classes the metrics list (all 13 when scored; none when not), NaN
        for a class without ground truth."""
        if self.kind == "dcase2026":
            return {(CLASS_NAMES.index(k) if k in CLASS_NAMES else int(k)): _num((v or {}).get("mAP"))
                    for k, v in (self.get("per_class") or {}).items()}
        if self.kind == "dcase2026-coco":
            return {int(k): _coco_ap(v) for k, v in (self.get("per_class_mAP") or {}).items()}
        return {}

    @property
    def class_ap(self) -> np.ndarray:
        """AP of classes 0..12 (float64): NaN for a class without ground truth or not scored."""
        out = np.full(N_CLASSES, np.nan)
        for c, v in self.per_class_ap.items():
            if 0 <= c < N_CLASSES:
                out[c] = v
        return out

    @property
    def class_pearson(self) -> np.ndarray:
        """Pearson r of classes 0..12 (dcase2026); NaN where there is none, and for every class
        under dcase2026-coco, whose script reports no per-class Pearson."""
        out = np.full(N_CLASSES, np.nan)
        if self.kind == "dcase2026":
            for k, v in (self.get("per_class") or {}).items():
                c = CLASS_NAMES.index(k) if k in CLASS_NAMES else int(k)
                if 0 <= c < N_CLASSES:
                    out[c] = _num((v or {}).get("pearson_r"))
        return out

    def summary(self) -> dict:
        """``{"mAP": headline, "pearson": pearson, "per_class_ap": {class id: AP}}``: how a
        portfolio records each estimate (portfolio.json)."""
        return {"mAP": self.headline, "pearson": self.pearson, "per_class_ap": self.per_class_ap}

    def class_table(self) -> pl.DataFrame:
        """``class_id, mAP, pearson``: one row per class 0..12 (:attr:`class_ap`, :attr:`class_pearson`)."""
        return pl.DataFrame({"class_id": list(range(N_CLASSES)), "mAP": self.class_ap.tolist(),
                             "pearson": self.class_pearson.tolist()},
                            schema={"class_id": pl.Int64, "mAP": pl.Float64, "pearson": pl.Float64})


def _coco_ap(v) -> float:
    """A dcase2026-coco per-class AP: pycocotools' -1 ("no ground truth") read as NaN."""
    v = _num(v)
    return math.nan if v < 0 else v
