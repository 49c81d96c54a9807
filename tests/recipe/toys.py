"""Test-only stages, tiny DCASE data and a hand-checkable scorer for the recipe, portfolio and
package tests. The stages are registered only inside :func:`toy_stages` (then removed), so the
registry seen by other tests stays the real one."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import polars as pl

from calib.stages import base
from calib.stages.base import Param, Stage, Tables, declare


def _with_raw(df: pl.DataFrame) -> pl.DataFrame:
    return df if "score_raw" in df.columns else df.with_columns(pl.col("score").alias("score_raw"))


class AddScore(Stage):
    """Add ``delta`` to every score."""

    adds_columns = ("score_raw",)
    applied = 0  # class-level call counter: tells the tests which stages really ran

    PARAMS = declare(delta=Param(float, 0.1, "added to every score", unit="score"))

    def apply(self, tables: Tables) -> Tables:
        type(self).applied += 1
        det = _with_raw(tables["detections"])
        return tables.replace(detections=det.with_columns(pl.col("score") + self.delta))


class ScaleScore(Stage):
    """Multiply every score by ``factor``."""

    adds_columns = ("score_raw",)
    applied = 0

    PARAMS = declare(factor=Param(float, 1.0, "every score is multiplied by it", unit="factor"))

    def apply(self, tables: Tables) -> Tables:
        type(self).applied += 1
        det = _with_raw(tables["detections"])
        return tables.replace(detections=det.with_columns(pl.col("score") * self.factor))


class ClassBias(Stage):
    """Learn each class's share of the GT annotations on the fit clips; add ``weight`` x share to
    the score of that class's detections."""

    needs_tables = ("detections", "truth")
    adds_columns = ("score_raw", "score_bias")
    learns = True
    applied = 0
    fitted_on: list = []  # clips of the last fit
    saw_truth_in_apply = False

    PARAMS = declare(weight=Param(float, 1.0, "multiplies the class's share of the GT before it is added"))

    def fit(self, tables: Tables) -> "ClassBias":
        truth = tables["truth"]
        type(self).fitted_on = sorted(truth.get_column("clip").unique().to_list())
        counts = truth.group_by("class_id").len().sort("class_id")
        total = max(len(truth), 1)
        self.share_ = {int(c): n / total for c, n in counts.iter_rows()}
        return self

    def apply(self, tables: Tables) -> Tables:
        type(self).applied += 1
        type(self).saw_truth_in_apply = "truth" in tables
        det = _with_raw(tables["detections"])
        share = pl.col("class_id").replace_strict(self.share_, default=0.0, return_dtype=pl.Float64)
        det = det.with_columns(share.alias("score_bias")).with_columns(pl.col("score") + self.weight * pl.col("score_bias"))
        return tables.replace(detections=det)


class RoundScore(Stage):
    """Emitter stand-in: round scores to ``digits`` decimals."""

    applied = 0

    PARAMS = declare(digits=Param(int, 3, "decimals kept", unit="digits", ge=0))

    def apply(self, tables: Tables) -> Tables:
        type(self).applied += 1
        return tables.replace(detections=tables["detections"].with_columns(pl.col("score").round(self.digits)))


class Explode(Stage):
    """Always fails (to test that a failed run leaves no output)."""

    PARAMS = declare(message=Param(str, "boom", "the error message raised"))

    def apply(self, tables: Tables) -> Tables:
        raise RuntimeError(self.message)


TOYS = {"t_add": AddScore, "t_scale": ScaleScore, "t_bias": ClassBias, "t_round": RoundScore, "t_explode": Explode}


@contextlib.contextmanager
def toy_stages():
    for name, cls in TOYS.items():
        base.register(name)(cls)
        cls.applied = 0
    try:
        yield TOYS
    finally:
        for name in TOYS:
            base.unregister(name)


# ----------------------------------------------------------------------------------------------
# tiny data: 4 clips, 2 frames; sony clips s1 s2 (dev-train-sony), tau clips t1 t2 (dev-test-tau)
TRIANGLE = [[10.0, 20.0, 1.0], [14.0, 20.0, 0.5], [12.0, 24.0, 0.5]]
CLIPS = {"s1": "dev-train-sony", "s2": "dev-train-sony", "t1": "dev-test-tau", "t2": "dev-test-tau"}
# (clip, frame, class) of GT annotations
GT = [("s1", 0, 0), ("s1", 1, 0), ("s2", 0, 0), ("s2", 0, 3), ("t1", 0, 3), ("t1", 1, 3), ("t2", 0, 5)]
# (clip, frame, class, score) of system "sysA" predictions
PRED = [("s1", 0, 0, 0.5), ("s1", 1, 3, 0.25), ("s2", 0, 0, 0.75), ("t1", 0, 3, 0.5), ("t2", 0, 5, 0.125),
        ("t2", 1, 0, 0.0625)]


def shifted(dx: float) -> list:
    return [[x + dx, y, e] for x, y, e in TRIANGLE]


def write_data(root: Path, pred=PRED, gt=GT) -> Path:
    """GT split folders and one system's prediction folder under ``root``; returns root."""
    for clip, split in CLIPS.items():
        anns = [{"metadata_frame_index": f, "category_id": c, "segmentation": [shifted(10 * c)]}
                for (cl, f, c) in gt if cl == clip]
        (root / "gt" / split).mkdir(parents=True, exist_ok=True)
        (root / "gt" / split / f"{clip}_std.json").write_text(json.dumps({"annotations": anns}))
        preds = [{"metadata_frame_index": f, "category_id": c, "score": s, "segmentation": [shifted(10 * c)]}
                 for (cl, f, c, s) in pred if cl == clip]
        (root / "systems" / "sysA").mkdir(parents=True, exist_ok=True)
        (root / "systems" / "sysA" / f"{clip}.json").write_text(json.dumps({"annotations": preds}))
    return root


def recipe_dict(**over) -> dict:
    d = {
        "name": "toy",
        "description": "toy pipeline for tests",
        "inputs": {"gt": "gt", "systems": {"sysA": "systems/sysA"}},
        "splits": {"fit": ["dev-train-sony"], "evaluate": ["dev-test-tau"]},
        "stages": [{"type": "t_add", "delta": 0.25}, {"type": "t_bias", "weight": 1.0},
                   {"type": "t_scale", "factor": 0.5}],
        "emit": {"type": "t_round", "digits": 3},
        "scoring": {"protocol": "dcase2026"},
    }
    d.update(over)
    return d


def toy_scorer(det: pl.DataFrame, truth: pl.DataFrame, scoring, *, gt_clips=None) -> dict:
    """A hand-checkable stand-in for the official metrics: "mAP" = mean score of the detections
    whose (clip, frame, class) has a GT annotation; Pearson = share of such detections."""
    keys = truth.select("clip", "frame", "class_id").unique()
    hit = det.join(keys, on=["clip", "frame", "class_id"], how="semi")
    m = float(hit.get_column("score").mean()) if len(hit) else 0.0
    per_class = {}
    from calib.constants import CLASS_NAMES

    for cid in sorted(truth.get_column("class_id").unique().to_list()):
        h = hit.filter(pl.col("class_id") == cid)
        per_class[CLASS_NAMES[cid]] = {"mAP": float(h.get_column("score").mean()) if len(h) else 0.0}
    return {"macro_mAP": m, "macro_pearson_r": len(hit) / max(len(det), 1), "per_class": per_class}
