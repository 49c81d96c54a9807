"""Per-class gating decided out-of-fold (calib.stages.gate): the rule on hand-computed gains, the
gated detections on hand-made tables (rescoring, removal, relabeling, fusion), and the gate's
decision on tiny data where the right answer is known by construction (a stage built to hurt
class 3 and help class 5: 5 kept, 3 dropped), scored with the official scorer."""
from __future__ import annotations

import contextlib
import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from calib.stages import base
from calib.stages.base import Param, Stage, Tables, declare
from calib.stages.gate import (ROW, GatedStage, build_stage, class_ap, clip_folds, combine, gate_rule, relabels,
                               rows_follow_input, tag_rows)
from tests.stages.gatedata import CLIPS, FRAMES, cap_tables, dets, truth

# ----------------------------------------------------------------------------------------------
# test-only stages, registered only inside the tests that use them
class HurtThreeHelpFive(Stage):
    """Drop every class-3 detection (its true positives: hurts 3) and every class-5 detection
    scored above 0.8 (its false positives: helps 5)."""

    def apply(self, tables: Tables) -> Tables:
        d = tables["detections"]
        drop = (pl.col("class_id") == 3) | ((pl.col("class_id") == 5) & (pl.col("score") > 0.8))
        return tables.replace(detections=d.filter(~drop))


class LearnedHurtHelp(HurtThreeHelpFive):
    """The same, but it learns (records the clips each fit saw)."""

    needs_tables = ("detections", "truth")
    learns = True
    fits: list = []

    def fit(self, tables: Tables) -> "LearnedHurtHelp":
        type(self).fits.append(sorted(tables["truth"].get_column("clip").unique().to_list()))
        self.clips_ = type(self).fits[-1]
        return self


class MoveClasses(Stage):
    """Relabel detections by ``moves`` (from class -> to class) where their x is at least 150."""

    PARAMS = declare(moves=Param(dict, {}, "class id -> the class it moves to", keys="class", item=int))

    def apply(self, tables: Tables) -> Tables:
        d = tables["detections"]
        moves = {int(k): int(v) for k, v in self.moves.items()}
        new = pl.col("class_id").replace_strict(moves, default=pl.col("class_id"), return_dtype=pl.Int64)
        x = pl.col("points").list.first().list.first().struct.field("x")
        return tables.replace(detections=d.with_columns(pl.when(x >= 150).then(new).otherwise(pl.col("class_id"))
                                                        .alias("class_id")))


class Fuse(Stage):
    """A fusion: the union of the systems' detections, renumbered, system "fused"."""

    needs_tables = ("systems",)
    adds_columns = ("score_raw",)

    def apply(self, tables: Tables) -> Tables:
        parts = [d for _, d in sorted(tables["systems"].items())]
        d = pl.concat(parts) if parts else tables["detections"].clear()
        d = d.with_columns(pl.col("score").alias("score_raw"), pl.lit("fused").alias("system"),
                           pl.int_range(pl.len(), dtype=pl.Int64).over("clip").alias("det_id"))
        return tables.replace(detections=d)


TOYS = {"hurt_three_help_five": HurtThreeHelpFive, "learned_hurt_help": LearnedHurtHelp, "move_classes": MoveClasses,
        "toy_fuse": Fuse}


@contextlib.contextmanager
def registered():
    for name, cls in TOYS.items():
        base.register(name)(cls)
    try:
        yield
    finally:
        for name in TOYS:
            base.unregister(name)


@pytest.fixture
def toys():
    with registered():
        LearnedHurtHelp.fits = []
        yield


# ----------------------------------------------------------------------------------------------
def test_rule_on_hand_computed_gains():
    # 3 folds: mean 0.2, s.d. 0.1, standard error 0.1 / sqrt(3) = 0.057735; Student's t with 2
    # degrees of freedom: 2.919986 at 0.95 (bar 0.168585, cleared), 6.964557 at 0.99 (bar 0.402098, not)
    n, mean, sd, bar, passes, _ = gate_rule(np.array([0.1, 0.2, 0.3]), 0.95)
    assert (n, passes) == (3, True) and mean == pytest.approx(0.2) and sd == pytest.approx(0.1)
    assert bar == pytest.approx(2.919986 * 0.1 / math.sqrt(3), rel=1e-6)
    assert gate_rule(np.array([0.1, 0.2, 0.3]), 0.99)[3] == pytest.approx(0.402098, rel=1e-5)
    assert not gate_rule(np.array([0.1, 0.2, 0.3]), 0.99)[4]
    # 4 folds: mean 0.1, s.d. sqrt(0.04 / 3), standard error 0.057735, t(0.95, 3) = 2.353363:
    # bar 0.135872 > 0.1, the folds disagree too much
    n, mean, sd, bar, passes, reason = gate_rule(np.array([0.0, 0.2, 0.0, 0.2]), 0.95)
    assert not passes and bar == pytest.approx(0.135872, rel=1e-5) and "folds disagree" in reason
    # confidence 0.5: t = 0, a positive mean is enough
    assert gate_rule(np.array([0.0, 0.2, 0.0, 0.2]), 0.5)[4]
    # a fold without ground truth (NaN) does not count; two folds are too few
    n, mean, _, _, passes, reason = gate_rule(np.array([0.4, np.nan, 0.5]), 0.95)
    assert (n, passes) == (2, False) and mean == pytest.approx(0.45) and "too few" in reason
    # no change at all is no gain; the same gain in every fold (s.d. 0) is kept
    assert not gate_rule(np.zeros(4), 0.5)[4]
    assert gate_rule(np.full(3, 0.05), 0.95)[4]
    assert not gate_rule(np.array([-0.2, -0.1, -0.3]), 0.5)[4]


def test_clip_folds_are_seeded_and_balanced():
    folds = clip_folds(CLIPS, 3, seed=0)
    assert sorted(folds) == CLIPS and sorted(np.bincount(list(folds.values()))) == [2, 2, 2]
    assert folds == clip_folds(list(reversed(CLIPS)), 3, seed=0)
    assert folds != clip_folds(CLIPS, 3, seed=1) or folds != clip_folds(CLIPS, 3, seed=2)


# ----------------------------------------------------------------------------------------------
def test_combine_rescoring_and_removal_per_class():
    inp = tag_rows(dets([("c0", 0, 3, 0.9, 60), ("c0", 0, 5, 0.5, 200), ("c0", 1, 5, 0.7, 200), ("c0", 1, 3, 0.4, 60)]))
    # the stage removes the class-3 row 0 and rescales every class-5 score
    out = inp.filter(pl.col(ROW) != 0).with_columns(
        pl.when(pl.col("class_id") == 5).then(pl.col("score") / 2).otherwise(pl.col("score")).alias("score"))
    assert rows_follow_input(inp, out) and not relabels(inp, out)
    got = combine(inp, out, {5})
    assert got.get_column("det_id").to_list() == [0, 1, 2, 3]  # row 0 kept: class 3 is not gated in
    assert got.get_column("score").to_list() == [0.9, 0.25, 0.35, 0.4]
    got = combine(inp, out, {3})
    assert got.get_column("det_id").to_list() == [1, 2, 3] and got.get_column("score").to_list() == [0.5, 0.7, 0.4]
    assert ROW not in got.columns
    assert_frame_equal(combine(inp, out, set()), inp.drop(ROW))
    assert_frame_equal(combine(inp, out, range(13)), out.drop(ROW))


def test_combine_relabel_needs_both_classes():
    inp = tag_rows(dets([("c0", 0, 3, 0.9, 200), ("c0", 0, 5, 0.8, 200), ("c0", 0, 3, 0.7, 200), ("c0", 0, 5, 0.6, 200)]))
    # row 0: 3 -> 5, row 1: 5 -> 3, row 2: 3 -> 4, row 3 stays 5; the stage notes the old class
    out = inp.with_columns(pl.Series("class_id", [5, 3, 4, 5]), pl.col("class_id").alias("fuse_class_raw"))
    assert relabels(inp, out)
    got = combine(inp, out, {3, 5})
    assert got.get_column("class_id").to_list() == [5, 3, 3, 5]  # 3 -> 4 needs 4 kept too
    assert got.get_column("fuse_class_raw").to_list() == [3, 5, 3, 5]  # filled on the row passed through
    got = combine(inp, out, {5})  # nothing moves: every move touches class 3
    assert got.get_column("class_id").to_list() == [3, 5, 3, 5]
    got = combine(inp, out, {3, 4})
    assert got.get_column("class_id").to_list() == [3, 5, 4, 5]
    # a class not kept sees exactly its input rows: none leave it, none arrive
    for kept in ({3}, {5}, {4}, {3, 4}, {3, 5}):
        g = combine(inp, out, kept)
        for c in set(range(13)) - kept:
            assert g.filter(pl.col("class_id") == c).get_column("det_id").to_list() == \
                inp.filter(pl.col("class_id") == c).get_column("det_id").to_list()


def test_combine_fusion_takes_whole_classes():
    a = dets([("c0", 0, 3, 0.9, 60), ("c0", 0, 5, 0.5, 200), ("c1", 0, 5, 0.4, 200)], system="a")
    b = dets([("c0", 0, 5, 0.95, 202), ("c1", 0, 3, 0.3, 60)], system="b")
    with registered():
        out = Fuse().apply(Tables(detections=tag_rows(a), systems={"a": a, "b": b}))["detections"]
    assert not rows_follow_input(tag_rows(a), out)
    got = combine(tag_rows(a), out, {5})
    # class 5 from the fusion (3 rows), class 3 from the input (1 row); one system; ids unique
    assert sorted(got.select("clip", "class_id", "score").rows()) == [
        ("c0", 3, 0.9), ("c0", 5, 0.5), ("c0", 5, 0.95), ("c1", 5, 0.4)]
    assert got.get_column("system").unique().to_list() == ["fused"]
    assert not got.select(pl.struct("clip", "det_id").is_duplicated().any()).item()
    # the input's row gets score_raw = its score (the upstream score it is)
    assert got.filter(pl.col("class_id") == 3).get_column("score_raw").to_list() == [0.9]


# ----------------------------------------------------------------------------------------------
def hurt_help_tables() -> Tables:
    """6 clips x 3 frames: a class-3 GT at x=60 and a class-5 GT at x=200 in every frame. The
    system finds both (class 3 at 0.9, class 5 at 0.5) and adds a class-5 false positive at x=300
    scored 0.9, in frames 0 and 1 of every clip (so class 5's AP is below 1)."""
    t = truth([(c, f, k, x) for c in CLIPS for f in FRAMES for k, x in ((3, 60), (5, 200))])
    rows = []
    for c in CLIPS:
        for f in FRAMES:
            rows += [(c, f, 3, 0.9, 60), (c, f, 5, 0.5, 200)] + ([(c, f, 5, 0.9, 300)] if f < 2 else [])
    return Tables(detections=dets(rows), truth=t)


def test_class_ap_hand_checked():
    t = hurt_help_tables()
    ap = class_ap(t["detections"], t["truth"])
    assert ap[3] == pytest.approx(1.0)
    # class 5: 12 false positives at 0.9 ranked before the 18 hits at 0.5 -> precision 18/30 at full recall
    assert ap[5] == pytest.approx(0.6)
    assert all(math.isnan(ap[c]) for c in set(range(13)) - {3, 5})


@pytest.mark.parametrize("stage_type", ["hurt_three_help_five", "learned_hurt_help"])
def test_gate_keeps_the_class_it_helps_and_drops_the_one_it_hurts(toys, stage_type):
    t = hurt_help_tables()
    gate = build_stage({"type": stage_type, "gate": "per_class", "gate_folds": 3})
    assert isinstance(gate, GatedStage)
    assert gate.fit(t) is gate
    assert gate.kept_classes_ == [5]
    table = {r["class_id"]: r for r in gate.decision_table_.iter_rows(named=True)}
    assert table[3]["mean_gain"] == pytest.approx(-1.0) and not table[3]["kept"]
    assert table[5]["mean_gain"] > 0 and table[5]["kept"] and table[5]["folds"] == 3
    gains = gate.fold_gains_.filter(pl.col("class_id") == 3)
    assert gains.height == 3 and gains.get_column("gain").to_list() == pytest.approx([-1.0] * 3)
    out = gate.apply(Tables(detections=t["detections"]))["detections"]
    # class 3 untouched, class 5 without its false positives
    assert out.filter(pl.col("class_id") == 3).height == 18
    assert out.filter(pl.col("class_id") == 5).get_column("score").to_list() == [0.5] * 18
    ap = class_ap(out, t["truth"])
    assert ap[3] == pytest.approx(1.0) and ap[5] == pytest.approx(1.0)
    if stage_type == "learned_hurt_help":
        # three folds fit on 4 clips each (never the held-out ones), then the final fit on all 6
        fits = LearnedHurtHelp.fits
        assert [len(f) for f in fits] == [4, 4, 4, 6] and fits[-1] == CLIPS
        folds = clip_folds(CLIPS, 3, seed=0)
        assert [sorted(set(CLIPS) - set(f)) for f in fits[:3]] == [sorted(c for c in CLIPS if folds[c] == k)
                                                                  for k in range(3)]
        assert gate.stage_.clips_ == CLIPS


def test_global_gate_is_all_or_nothing(toys):
    t = hurt_help_tables()
    # macro over classes 3 and 5: -1 for class 3 outweighs class 5's gain: not applied anywhere
    gate = build_stage({"type": "hurt_three_help_five", "gate": "global", "gate_folds": 3}).fit(t)
    assert gate.kept_classes_ == []
    macro = gate.decision_table_.filter(pl.col("class_id").is_null()).row(0, named=True)
    assert macro["mean_gain"] < 0 and not macro["kept"]
    out = gate.apply(Tables(detections=t["detections"]))
    assert_frame_equal(out["detections"], t["detections"])


def test_relabeling_gate_moves_only_between_kept_classes(toys):
    """Classes 3 and 5: class-3 detections sit on class-5 truth at x=200 (a relabel 3 -> 5 fixes
    them: 3 loses false positives, 5 gains hits). Classes 7 and 9 share a place at x=250, both in
    the truth; class-7 hits there are moved to 9: 7 loses what 9 gains, so 9's gain exists only if
    7 is changed too, which its own loss forbids: the re-check drops 9."""
    t_rows, d_rows = [], []
    for c in CLIPS:
        for f in FRAMES:
            t_rows += [(c, f, 3, 60), (c, f, 5, 200), (c, f, 7, 250), (c, f, 9, 250)]
            d_rows += [(c, f, 3, 0.6, 60), (c, f, 3, 0.9, 200), (c, f, 7, 0.8, 250)]
    t = Tables(detections=dets(d_rows), truth=truth(t_rows))
    gate = build_stage({"type": "move_classes", "moves": {"3": 5, "7": 9}, "gate": "per_class", "gate_folds": 3}).fit(t)
    table = {r["class_id"]: r for r in gate.decision_table_.iter_rows(named=True)}
    assert table[3]["passes"] and table[5]["passes"] and table[9]["passes"] and not table[7]["passes"]
    assert gate.kept_classes_ == [3, 5]
    assert not table[9]["kept"] and table[9]["reason"].startswith("dropped")
    assert gate.summary_["relabels"] and gate.summary_["refinement_rounds"] == 2
    out = gate.apply(Tables(detections=t["detections"]))["detections"]
    assert out.group_by("class_id").len().sort("class_id").rows() == [(3, 18), (5, 18), (7, 18)]


def test_too_few_clips_applies_nothing(toys):
    t = hurt_help_tables()
    two = Tables(detections=t["detections"].filter(pl.col("clip").is_in(["c0", "c1"])),
                 truth=t["truth"].filter(pl.col("clip").is_in(["c0", "c1"])))
    gate = build_stage({"type": "hurt_three_help_five", "gate": "per_class"}).fit(two)
    assert gate.kept_classes_ == [] and gate.summary_["folds"] == 2
    assert "too few to cross-fit" in gate.decision_table_.get_column("reason")[0]


def test_gate_parameters_and_round_trip(toys):
    gate = build_stage({"type": "hurt_three_help_five", "gate": "per_class", "gate_folds": 5, "gate_confidence": 0.9},
                       scoring={"protocol": "dcase2026-coco"})
    assert gate.get_params() == {"stage": {"type": "hurt_three_help_five"}, "gate": "per_class", "folds": 5, "seed": 0,
                                 "confidence": 0.9, "scoring": {"protocol": "dcase2026-coco"}}
    assert gate.to_dict() == {"type": "hurt_three_help_five", "gate": "per_class", "gate_folds": 5, "gate_seed": 0,
                              "gate_confidence": 0.9}
    assert build_stage(gate.to_dict(), scoring=gate.scoring).get_params() == gate.get_params()
    assert not isinstance(build_stage({"type": "hurt_three_help_five", "gate": "none"}), GatedStage)
    for bad, msg in (({"gate": "sometimes"}, "gate"), ({"gate": "global", "gate_folds": 2}, "gate_folds"),
                     ({"gate": "global", "gate_confidence": 1.0}, "gate_confidence"),
                     ({"gate": "global", "gate_confidence": 0.4}, "gate_confidence")):
        with pytest.raises(ValueError, match=msg):
            build_stage({"type": "hurt_three_help_five", **bad})
    with pytest.raises(RuntimeError, match="fit it"):
        gate.apply(hurt_help_tables())


def test_gate_refuses_thresholds_it_cannot_score_with_before_fitting(toys):
    for scoring, msg in (({"protocol": "dcase2026-coco", "iou_thresholds": [0.5]}, "fixed IoU thresholds"),
                         ({"iou_thresholds": "0.5:0.1"}, "expected start:step:end")):
        gate = build_stage({"type": "hurt_three_help_five", "gate": "per_class"}, scoring=scoring)
        with pytest.raises(ValueError, match=f"gate: scoring.iou_thresholds: .*{msg}"):
            gate.fit(hurt_help_tables())


def test_class_ap_with_the_recipe_thresholds():
    t = hurt_help_tables()
    # every hit is an exact copy (IoU 1), so any thresholds give the same AP as the defaults
    assert class_ap(t["detections"], t["truth"], {"iou_thresholds": "0.5:0.25:1"})[[3, 5]] == pytest.approx([1.0, 0.6])


def test_real_cap_stage_gated_per_class():
    """The real cap stage on data where it hurts class 3 and helps class 5 by construction."""
    t = cap_tables()
    ap = class_ap(t["detections"], t["truth"])
    assert ap[3] == pytest.approx(1.0) and ap[5] < 1.0
    ungated = build_stage({"type": "cap", "per_class": 1}).apply(t)["detections"]
    ap_cap = class_ap(ungated, t["truth"])
    # half the recall at precision 1: 51 of the scorer's 101 recall points (0, 0.01, ..., 0.5)
    assert ap_cap[3] == pytest.approx(51 / 101) and ap_cap[5] == pytest.approx(1.0)
    gate = build_stage({"type": "cap", "per_class": 1, "gate": "per_class", "gate_folds": 3}).fit(t)
    assert gate.kept_classes_ == [5]
    out = gate.apply(Tables(detections=t["detections"]))["detections"]
    ap_gated = class_ap(out, t["truth"])
    assert ap_gated[3] == pytest.approx(1.0) and ap_gated[5] == pytest.approx(1.0)


def test_fusion_gate_takes_whole_classes_and_names_its_output(toys):
    """System a finds class 3 (x=60); system b finds class 5 (x=200) and adds class-3 false
    positives (x=300) scored above a's hits. Their union gains class 5 (AP 0 -> 1) and loses
    class 3: the gate takes class 5 from the union, class 3 from a, and names the table "fused"
    whatever it keeps, so tables of different folds or decisions pool and score as one system."""
    t_rows = [(c, f, k, x) for c in CLIPS for f in FRAMES for k, x in ((3, 60), (5, 200))]
    a = dets([(c, f, 3, 0.5, 60) for c in CLIPS for f in FRAMES], system="a")
    b = dets([r for c in CLIPS for f in FRAMES for r in ((c, f, 5, 0.5, 200), (c, f, 3, 0.9, 300))], system="b")
    t = Tables(detections=a, systems={"a": a, "b": b}, truth=truth(t_rows))
    gate = build_stage({"type": "toy_fuse", "gate": "per_class", "gate_folds": 3}).fit(t)
    assert gate.kept_classes_ == [5] and gate.system_ == "fused"
    out = gate.apply(Tables(detections=a, systems={"a": a, "b": b}))["detections"]
    assert out.get_column("system").unique().to_list() == ["fused"]
    assert out.group_by("class_id", "score").len().sort("class_id").rows() == [(3, 0.5, 18), (5, 0.5, 18)]
    assert not out.select(pl.struct("clip", "det_id").is_duplicated().any()).item()
    ap = class_ap(out, t["truth"])
    assert ap[3] == pytest.approx(1.0) and ap[5] == pytest.approx(1.0)
    # a global gate weighs the two: class 3 loses 0.5 (18 false positives ranked above its 18 hits:
    # precision 0.5), class 5 gains 1, the macro mAP gains 0.25 in every fold: the union everywhere
    glob = build_stage({"type": "toy_fuse", "gate": "global", "gate_folds": 3}).fit(t)
    macro = glob.decision_table_.filter(pl.col("class_id").is_null()).row(0, named=True)
    assert macro["mean_gain"] == pytest.approx(0.25) and macro["kept"] and glob.kept_classes_ == list(range(13))
    out = glob.apply(Tables(detections=a, systems={"a": a, "b": b}))["detections"]
    assert out.get_column("system").unique().to_list() == ["fused"] and out.height == 18 * 3
    # a gate that keeps nothing still names the table as the stage does
    none = build_stage({"type": "toy_fuse", "gate": "per_class", "gate_folds": 3, "gate_confidence": 0.5})
    none.fit(Tables(detections=a, systems={"a": a}, truth=t["truth"]))  # the union of a alone changes nothing
    assert none.kept_classes_ == [] and none.system_ == "fused"
    out = none.apply(Tables(detections=a, systems={"a": a}))["detections"]
    assert out.get_column("system").unique().to_list() == ["fused"]
    assert_frame_equal(out.drop("system"), a.drop("system"))
