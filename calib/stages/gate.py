"""Per-class gating decided out-of-fold: apply a stage only where it helps on clips it never saw.

A fusion, relabeling or per-class selection stage can gain on some classes and lose on others,
and a choice made on a dozen dev clips need not hold on the next dozen. A recipe entry with
``gate = "per_class"`` (or ``"global"``) wraps its stage in a :class:`GatedStage`, which learns
where the stage may act:

1. ``fit`` (on the recipe's fit clips, with the ground truth) deals the clips with ground truth
   into ``gate_folds`` folds (a seeded permutation, ``gate_seed``). For each fold the wrapped stage
   is fit on the other folds and applied to the held-out one (a stage that does not learn is
   simply applied); the held-out detections are scored with the recipe's protocol with and
   without the stage. The gain of a class in a fold is its AP with the stage minus its AP
   without; the global gain is the same difference of the macro mAP (mean AP over the classes
   with ground truth in that fold).
2. The rule (per class, or once for the global gain): with ``n`` folds measuring the gain (folds
   whose clips hold ground truth of the class; at least 3), mean ``m`` and sample standard
   deviation ``s`` (ddof = 1) over them, keep the stage when

       m > t(gate_confidence, n - 1) * s / sqrt(n)   and   m > 0,

   ``t(q, df)`` being Student's t quantile: the one-sided lower confidence bound of the mean gain
   (at ``gate_confidence``, default 0.95) is above zero. Why this bar: it is a multiple of the
   standard error whose factor grows as folds get fewer (2.92 at 3 folds, 2.35 at 4, 2.13 at 5,
   1.83 at 10), so with a dozen clips a class is kept only where nearly every fold agrees, and a
   fixed multiple would treat 3 folds like 30. ``gate_confidence = 0.5`` asks for a positive
   mean only.
3. The wrapped stage is then fit on all fit clips (``stage_``).

A class whose gain cannot be measured (ground truth in fewer than 3 folds, or fewer than 3 clips
with ground truth at all) is never acted on: without evidence the input passes. The gain is that
of the stage's own output (scored before later stages and the emitter run). Cost: K fits of a
learning stage (one apply for the others) and two scorings of the fit clips, once per fit.

What "applied to class c" means (``apply``, and the gated detections scored in fit):

- a stage whose output rows are the input's rows, changed or removed (thresholds, caps, NMS,
  teacher counting, rescoring, relabeling; recognised by a row tag the output keeps): a row's
  change (its new score, mask or class, or its removal) is taken only when its input class *and*
  its output class are both kept. A class that is not kept therefore sees exactly the input's
  rows: none leave it, none arrive (teacher_relabel moving a detection from class 3 to class 5
  needs both 3 and 5 kept). Because relabeling couples classes, the per-class decision for such a
  stage is re-checked on the gated output until every kept class clears the bar by itself;
- a stage whose output is built anew (fusion from ``systems``: max_envelope, calibrated_union,
  mask_fusion): per class, all output rows of a kept class, all input rows of the others.

Rows passed through from the input get ``score_raw`` = ``score`` and ``fuse_class_raw`` =
``class_id`` when the stage adds those columns (the upstream score and class, which they are);
other columns the stage adds are null on them. A stage that names its output system (a fusion's
``system_name``) names the gated output so whatever the gate decided (learned in fit as
``system_``: every clip fold and every decision give one system name, which scoring and pooling
need); ``det_id`` is renumbered per clip only where the two sides' ids collide.

Learned (stored by :mod:`calib.recipe.state` without pickles, the wrapped stage's own state
nested): ``stage_`` (the wrapped stage fit on all fit clips), ``kept_classes_`` (class ids where
it acts), ``fold_gains_`` (fold, class_id (null: macro), ap_without, ap_with, gain),
``decision_table_`` (per class and the macro row: folds, mean gain, s.d., bar, passes, kept,
reason), ``system_`` (the system name the stage gives its output, None when it keeps the
input's) and ``summary_``.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

from calib.constants import CLASS_NAMES, N_CLASSES, PROTOCOLS
from calib.stages.base import REQUIRED, Param, Stage, Tables, declare, get_stage, make_stage

MODES = ("per_class", "global")
#: ``gate`` values a recipe accepts ("none": not gated, handy as a portfolio axis value)
RECIPE_MODES = (*MODES, "none")
#: a gain must be measured on at least this many folds (a spread needs three values to mean much)
MIN_FOLDS = 3
#: the keys any recipe stage entry may carry to gate its stage, declared like stage parameters
#: (``calib stages gate`` lists them; the recipe loader checks them with these declarations)
GATE_KEYS = declare(
    gate=Param(str, "none", "apply the stage only to the classes where it gains out-of-fold ('per_class'), "
               "everywhere or nowhere ('global'), or ungated ('none')", choices=RECIPE_MODES),
    gate_folds=Param(int, 4, "clip folds the gate cross-fits the stage over (fewer clips: one fold per clip)",
                     unit="clip folds", ge=MIN_FOLDS),
    gate_seed=Param(int, 0, "seed of the clips' assignment to folds", ge=0),
    gate_confidence=Param(float, 0.95, "keep where the mean held-out gain is above zero at this one-sided "
                          "confidence over the folds (Student's t; 0.5: a positive mean suffices)",
                          unit="probability", ge=0.5, lt=1),
)
#: recipe keys of a gated entry -> (GatedStage parameter, default)
RECIPE_PARAMS: dict[str, tuple[str, Any]] = {k: (k.removeprefix("gate_"), p.default)
                                             for k, p in GATE_KEYS.items() if k != "gate"}
RECIPE_KEYS = tuple(GATE_KEYS)
#: hidden column tagging each input row while the wrapped stage runs
ROW = "__gate_row"
#: columns that hold the upstream value of a rewritten one: filled on rows passed through
RAW_OF = {"score_raw": "score", "fuse_class_raw": "class_id"}
DECISION_SCHEMA = {"class_id": pl.Int64, "class_name": pl.String, "folds": pl.Int64, "mean_gain": pl.Float64,
                   "sd_gain": pl.Float64, "bar": pl.Float64, "passes": pl.Boolean, "kept": pl.Boolean,
                   "reason": pl.String}
GAINS_SCHEMA = {"fold": pl.Int64, "class_id": pl.Int64, "ap_without": pl.Float64, "ap_with": pl.Float64,
                "gain": pl.Float64}
MACRO_NAME = "macro (all classes)"


def gate_param_problem(key: str, value: Any) -> str | None:
    """What is wrong with the value of a recipe's gate key (None when it is fine), from its
    declaration in :data:`GATE_KEYS`."""
    if key not in GATE_KEYS:
        return f"not a gate key; gate keys: {', '.join(RECIPE_KEYS)}"
    return GATE_KEYS[key].problem(value)


def build_stage(entry: Mapping[str, Any], scoring: Mapping[str, Any] | None = None) -> Stage:
    """A stage from a recipe entry ``{"type": name, **params}``, wrapped in a :class:`GatedStage`
    when the entry has ``gate = "per_class" | "global"`` (gate keys: :data:`RECIPE_KEYS`);
    ``scoring``: the recipe's ``[scoring]`` table the gate scores with."""
    entry = dict(entry)
    gate = entry.pop("gate", None)
    given = {k: entry.pop(k) for k in RECIPE_PARAMS if k in entry}
    for k, v in {"gate": gate, **given}.items():
        problem = gate_param_problem(k, v) if v is not None or k != "gate" else None
        if problem:
            raise ValueError(f"{k}: {problem}")
    if gate in (None, "none"):
        return make_stage(entry)
    return GatedStage(stage=entry, gate=gate, scoring=None if scoring is None else dict(scoring),
                      **{RECIPE_PARAMS[k][0]: v for k, v in given.items()})


# ----------------------------------------------------------------------------------------------
def class_ap(det: pl.DataFrame, truth: pl.DataFrame, scoring: Mapping[str, Any] | None = None,
             clips: Sequence[str] | None = None) -> np.ndarray:
    """Per-class mAP (13 values) of ``det`` scored against ``truth`` on the truth's clips (or on
    ``clips``, clips with a GT file, some maybe without annotation) with a recipe's ``[scoring]``
    (protocol, iou_thresholds, options); NaN for a class without ground truth there
    (:attr:`calib.score.ScoreResult.class_ap`). A truth clip without detections scores as an
    empty file."""
    from calib.score.facade import class_scores

    scoring = dict(scoring or {})
    return class_scores(det, truth, protocol=scoring.get("protocol", "dcase2026"),
                        iou_thresholds=scoring.get("iou_thresholds"), options=scoring.get("options"),
                        gt_clips=clips).class_ap


def macro_gain(ap_with: np.ndarray, ap_without: np.ndarray) -> float:
    """Macro mAP with minus without (means over the classes with ground truth; NaN when none)."""
    has = ~np.isnan(ap_without)
    return float(np.mean(ap_with[has]) - np.mean(ap_without[has])) if has.any() else math.nan


def gate_bar(sd: float, n: int, confidence: float) -> float:
    """The bar a mean gain over ``n`` folds must clear: Student's t quantile at ``confidence``
    with n - 1 degrees of freedom times the standard error ``sd / sqrt(n)``."""
    from scipy.stats import t

    return float(t.ppf(float(confidence), n - 1)) * sd / math.sqrt(n)


def gate_rule(gains: np.ndarray, confidence: float) -> tuple[int, float, float, float, bool, str]:
    """(folds measured, mean gain, s.d., bar, passes, reason) for one class's (or the macro)
    gains over folds (NaN where a fold has no ground truth of it): passes when at least
    :data:`MIN_FOLDS` folds measured it, the mean is above 0 and above :func:`gate_bar`."""
    g = np.asarray(gains, dtype=np.float64)
    g = g[~np.isnan(g)]
    n = int(g.size)
    if n < MIN_FOLDS:
        return n, (float(g.mean()) if n else math.nan), math.nan, math.nan, False, \
            f"ground truth in {n} fold(s): too few to measure a spread (needs {MIN_FOLDS})"
    mean, sd = float(g.mean()), float(g.std(ddof=1))
    bar = gate_bar(sd, n, confidence)
    if mean > bar and mean > 0:
        return n, mean, sd, bar, True, "mean gain clears the bar"
    if mean <= 0:
        return n, mean, sd, bar, False, "no mean gain"
    return n, mean, sd, bar, False, f"mean gain not above zero at {float(confidence):g} confidence (folds disagree)"


def fold_gains_table(ap_without: np.ndarray, ap_with: np.ndarray, macro: np.ndarray) -> pl.DataFrame:
    """One row per fold and class (and per fold a macro row, class_id null): the AP without and
    with the stage and the gain; NaN where the fold has no ground truth of the class."""
    rows = []
    for f in range(len(ap_without)):
        rows += [(f, c, ap_without[f, c], ap_with[f, c], ap_with[f, c] - ap_without[f, c]) for c in range(N_CLASSES)]
        has = ~np.isnan(ap_without[f])
        means = (float(np.mean(ap_without[f, has])), float(np.mean(ap_with[f, has]))) if has.any() else (math.nan,) * 2
        rows.append((f, None, *means, macro[f]))
    return pl.DataFrame(rows, schema=GAINS_SCHEMA, orient="row")


def clip_folds(clips, n_folds: int, seed: int) -> dict[str, int]:
    """Fold (0..n_folds-1) of each clip: a seeded permutation of the sorted clips dealt round robin."""
    clips = sorted(set(clips))
    order = np.random.default_rng(seed).permutation(len(clips))
    return {clips[i]: int(k % n_folds) for k, i in enumerate(order)}


# ----------------------------------------------------------------------------------------------
def tag_rows(det: pl.DataFrame) -> pl.DataFrame:
    """``det`` with its row number in the hidden column :data:`ROW`."""
    return det.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW))


def rows_follow_input(inp: pl.DataFrame, out: pl.DataFrame) -> bool:
    """True when every output row carries a distinct input row tag: the stage changed, removed or
    kept the input's rows rather than building new ones."""
    if ROW not in out.columns or ROW not in inp.columns:
        return False
    tags = out.get_column(ROW)
    return (tags.null_count() == 0 and tags.n_unique() == out.height
            and bool(tags.is_in(inp.get_column(ROW).implode()).all()))


def relabels(inp: pl.DataFrame, out: pl.DataFrame) -> bool:
    """True when the stage kept the input's rows and moved at least one to another class."""
    if not rows_follow_input(inp, out) or out.height == 0:
        return False
    moved = out.select(ROW, "class_id").join(inp.select(ROW, pl.col("class_id").alias("_in")), on=ROW)
    return bool((moved.get_column("class_id") != moved.get_column("_in")).any())


def renamed_system(inp: pl.DataFrame, out: pl.DataFrame) -> str | None:
    """The one system name of ``out`` when it differs from ``inp``'s (a stage naming its output
    system), else None."""
    names = out.get_column("system").unique().to_list() if "system" in out.columns else []
    before = inp.get_column("system").unique().to_list() if "system" in inp.columns else []
    return names[0] if len(names) == 1 and names != before else None


def combine(inp: pl.DataFrame, out: pl.DataFrame, kept) -> pl.DataFrame:
    """The gated detections from the stage's input (tagged with :func:`tag_rows`) and output,
    the stage acting on the classes ``kept`` only (see the module docstring). The tag is dropped."""
    kept = sorted(int(c) for c in kept)
    is_kept = pl.col("class_id").is_in(kept)
    if rows_follow_input(inp, out):
        src = inp.select(ROW, pl.col("class_id").is_in(kept).alias("_in_kept"))
        o = out.join(src, on=ROW, how="left", maintain_order="left").with_columns(
            (pl.col("_in_kept") & is_kept).alias("_apply"))
        taken = o.filter(pl.col("_apply")).drop("_in_kept", "_apply")
        # an input row stays as it was when its change is not taken; a row the stage removed
        # stays unless its class is kept
        fate = o.select(ROW, "_apply")
        passed = (inp.join(fate, on=ROW, how="left", maintain_order="left")
                  .filter(pl.when(pl.col("_apply").is_null()).then(~is_kept).otherwise(~pl.col("_apply")))
                  .drop("_apply"))
        res = pl.concat([taken, passed.with_columns(_passed=pl.lit(True))], how="diagonal_relaxed").sort(ROW)
    else:
        res = pl.concat([out.filter(is_kept).with_columns(_part=pl.lit(0)),
                         inp.filter(~is_kept).with_columns(_part=pl.lit(1), _passed=pl.lit(True))],
                        how="diagonal_relaxed").sort(["clip", "frame", "_part", "det_id"], maintain_order=True)
    passed_rows = pl.col("_passed").fill_null(False)
    fills = [pl.when(passed_rows & pl.col(raw).is_null()).then(pl.col(src)).otherwise(pl.col(raw)).alias(raw)
             for raw, src in RAW_OF.items() if raw in res.columns and raw in out.columns and raw not in inp.columns]
    if fills:
        res = res.with_columns(fills)
    systems = out.get_column("system").unique().to_list() if "system" in out.columns else []
    if len(systems) == 1:
        res = res.with_columns(pl.lit(systems[0], pl.String).alias("system"))
    if res.height and res.select(pl.struct("clip", "det_id").is_duplicated().any()).item():
        res = res.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("clip").alias("det_id"))
    keep_cols = [c for c in out.columns if c != ROW] + [c for c in inp.columns if c not in out.columns and c != ROW]
    return res.select(keep_cols)


# ----------------------------------------------------------------------------------------------
class GatedStage(Stage):
    """Apply a wrapped stage only to the classes where it gains out-of-fold (``per_class``), or
    everywhere or nowhere (``global``), as decided by cross-fitting it over clip folds of the fit
    clips; see :mod:`calib.stages.gate`.

    Parameters: ``stage`` (the wrapped stage's recipe entry ``{"type": ..., **params}``), ``gate``
    (``"per_class"`` or ``"global"``), ``folds`` (clip folds, at least 3; fewer clips than folds:
    one fold per clip), ``seed`` (fold assignment), ``confidence`` (the one-sided confidence, over
    the folds, that the mean held-out gain is positive) and ``scoring`` (the recipe's ``[scoring]``
    table: protocol, iou_thresholds, options). In a recipe: ``gate``, ``gate_folds``,
    ``gate_seed``, ``gate_confidence`` on the stage's entry; the scoring is the recipe's.
    """

    name = "gate"
    learns = True
    learned_attributes = {"stage_": Stage, "kept_classes_": list, "fold_gains_": pl.DataFrame,
                          "decision_table_": pl.DataFrame, "system_": (str, type(None)), "summary_": dict}
    PARAMS = declare(
        stage=Param(dict, REQUIRED, "the wrapped stage's recipe entry {\"type\": ..., **params}"),
        gate=GATE_KEYS["gate"].but(default="per_class", choices=MODES),
        folds=GATE_KEYS["gate_folds"],
        seed=GATE_KEYS["gate_seed"],
        confidence=GATE_KEYS["gate_confidence"],
        scoring=Param(dict, None, "the recipe's [scoring] table the gate scores with (protocol, iou_thresholds, "
                      "options; none: dcase2026)", nullable=True),
    )

    # -- what the wrapped stage is
    def wrapped_class(self) -> type[Stage]:
        return get_stage(self.stage["type"])

    def wrapped_stage(self) -> Stage:
        """A fresh, unfitted wrapped stage."""
        return make_stage(copy.deepcopy(dict(self.stage)))

    @property
    def needs_tables(self) -> tuple[str, ...]:
        inner = self.wrapped_class().needs_tables
        return tuple(inner) + (() if "truth" in inner else ("truth",))

    @property
    def needs_columns(self) -> tuple[str, ...]:
        inner = self.wrapped_class().needs_columns
        return tuple(inner) + (() if "class_id" in inner else ("class_id",))

    @property
    def adds_columns(self) -> tuple[str, ...]:
        return tuple(self.wrapped_class().adds_columns)

    def code_modules(self) -> list[str]:
        return self.wrapped_stage().code_modules()

    def to_dict(self) -> dict[str, Any]:
        """The recipe entry: the wrapped stage's entry plus the gate keys (the scoring is the
        recipe's; rebuild with :func:`build_stage`)."""
        return {**copy.deepcopy(dict(self.stage)), "gate": self.gate, "gate_folds": self.folds,
                "gate_seed": self.seed, "gate_confidence": self.confidence}

    def _check(self) -> None:
        if not isinstance(self.stage, Mapping) or not isinstance(self.stage.get("type"), str):
            raise ValueError(f"gate: stage must be a stage entry with a 'type', got {self.stage!r}")
        for key, value in (("gate", self.gate), ("gate_folds", self.folds), ("gate_seed", self.seed),
                           ("gate_confidence", self.confidence)):
            problem = gate_param_problem(key, value)
            if problem or value == "none":
                raise ValueError(f"gate: {key}: {problem or 'a gated stage needs per_class or global'}")
        protocol = (self.scoring or {}).get("protocol", "dcase2026")
        if protocol not in PROTOCOLS:
            raise ValueError(f"gate: unknown scoring protocol {protocol!r}")
        from calib.score.thresholds import parse_thresholds

        try:
            parse_thresholds((self.scoring or {}).get("iou_thresholds"), protocol)
        except ValueError as e:
            raise ValueError(f"gate: scoring.iou_thresholds: {e}") from None

    # -- learning where the stage may act
    def fit(self, tables: Tables) -> "GatedStage":
        self._check()
        truth = tables["truth"]
        clips = tables.truth_clips.get_column("clip").to_list()  # GT files without annotation too
        k = min(int(self.folds), len(clips))
        parts: list[tuple] = []
        relabel, rounds = False, 0
        if k >= MIN_FOLDS:
            parts = self._cross_fit(tables, clip_folds(clips, k, int(self.seed)), k)
            truths = [Tables(truth=truth).subset(held)["truth"] for held, _, _ in parts]
            ap_wo = np.array([class_ap(inp, t, self.scoring, held) for (held, inp, _), t in zip(parts, truths)])
            ap_w = np.array([class_ap(out, t, self.scoring, held) for (held, _, out), t in zip(parts, truths)])
            relabel = any(relabels(inp, out) for _, inp, out in parts)
            gains = ap_w - ap_wo
            macro = np.array([macro_gain(w, wo) for w, wo in zip(ap_w, ap_wo)])
            rules = [gate_rule(gains[:, c], self.confidence) for c in range(N_CLASSES)]
            macro_rule = gate_rule(macro, self.confidence)
        else:
            ap_wo = ap_w = np.full((0, N_CLASSES), np.nan)
            macro = np.zeros(0)
            why = f"{len(clips)} clip(s) with ground truth: too few to cross-fit (needs {MIN_FOLDS})"
            rules = [(0, math.nan, math.nan, math.nan, False, why)] * N_CLASSES
            macro_rule = (0, math.nan, math.nan, math.nan, False, why)
        reasons = [r[5] for r in rules]
        if self.gate == "global":
            kept = set(range(N_CLASSES)) if macro_rule[4] else set()
            reasons = [f"global gate ({'applied' if kept else 'not applied'}: see the macro row)"] * N_CLASSES
        else:
            kept = {c for c in range(N_CLASSES) if rules[c][4]}
            if relabel and kept:
                kept, rounds, reasons = self._refine(parts, truths, ap_wo, kept, reasons)
        self.kept_classes_ = sorted(kept)
        self.fold_gains_ = fold_gains_table(ap_wo, ap_w, macro)
        table = [(c, CLASS_NAMES[c], *rules[c][:5], c in kept, reasons[c]) for c in range(N_CLASSES)]
        table.append((None, MACRO_NAME, *macro_rule[:5], self.gate == "global" and bool(kept), macro_rule[5]))
        self.decision_table_ = pl.DataFrame(table, schema=DECISION_SCHEMA, orient="row")
        self.summary_ = {"mode": self.gate, "folds": k, "clips": len(clips), "confidence": float(self.confidence),
                         "relabels": relabel, "refinement_rounds": rounds}
        self.stage_ = self.wrapped_stage().fit(tables)
        if not parts:  # nothing cross-fitted: see what the stage makes of the fit clips
            tagged = tag_rows(tables["detections"])
            parts = [(clips, tagged, self.stage_.apply(tables.replace(detections=tagged).without_truth())["detections"])]
        names = {renamed_system(inp, out) for _, inp, out in parts if out.height}
        self.system_ = names.pop() if len(names) == 1 else None
        return self

    def _cross_fit(self, tables: Tables, fold_of: dict[str, int], k: int) -> list[tuple]:
        """Per fold: (its clips, its tagged input detections, the stage's output on them), the
        stage fit on the other folds (or, when it does not learn, applied once to every clip)."""
        tagged = tables.replace(detections=tag_rows(tables["detections"]))
        inner = self.wrapped_stage()
        whole = None if inner.learns else inner.fit(tagged.without_truth()).apply(tagged.without_truth())["detections"]
        parts = []
        for f in range(k):
            held = [c for c, g in fold_of.items() if g == f]
            if whole is None:
                train = [c for c, g in fold_of.items() if g != f]
                st = self.wrapped_stage().fit(tables.subset(train))
                test = tagged.subset(held)
                out = st.apply(test.without_truth())["detections"]
                parts.append((held, test["detections"], out))
            else:
                keep = pl.col("clip").is_in(held)
                parts.append((held, tagged["detections"].filter(keep), whole.filter(keep)))
        return parts

    def _refine(self, parts, truths, ap_wo, kept: set[int], reasons: list[str]):
        """Relabeling couples classes (a change needs both its classes kept): re-score the gated
        held-out folds and drop kept classes whose own gain no longer clears the bar, until none
        is dropped. Returns (kept, rounds, reasons)."""
        reasons = list(reasons)
        rounds = 0
        while kept:
            rounds += 1
            ap_g = np.array([class_ap(combine(inp, out, kept), t, self.scoring, held)
                             for (held, inp, out), t in zip(parts, truths)])
            still = {c for c in kept if gate_rule(ap_g[:, c] - ap_wo[:, c], self.confidence)[4]}
            for c in kept - still:
                reasons[c] = ("dropped: once the classes it trades detections with are gated, its own gain "
                              "no longer clears the bar")
            if still == kept:
                break
            kept = still
        return kept, rounds, reasons

    # -- applying it
    def apply(self, tables: Tables) -> Tables:
        if not hasattr(self, "stage_"):
            raise RuntimeError(f"gate ({self.stage.get('type')}): fit it on tables with ground truth before apply")
        want = self.wrapped_stage()
        if type(self.stage_) is not type(want) or self.stage_.get_params() != want.get_params():
            raise RuntimeError(f"gate: the learned stage {self.stage_!r} is not the wrapped {want!r}")
        kept = set(self.kept_classes_)
        if not kept:
            out, det = Tables(tables), tables["detections"]
        elif kept >= set(range(N_CLASSES)):
            out = self.stage_.apply(tables)
            det = out["detections"]
        else:
            tagged = tag_rows(tables["detections"])
            out = self.stage_.apply(tables.replace(detections=tagged))
            det = combine(tagged, out["detections"], kept)
        if self.system_ is not None and "system" in det.columns:
            det = det.with_columns(pl.lit(self.system_, pl.String).alias("system"))
        return out.replace(detections=det) if det is not tables["detections"] else out

    def report(self) -> str:
        """The decision table as text."""
        if not hasattr(self, "decision_table_"):
            raise RuntimeError("gate: not fitted")
        with pl.Config(tbl_rows=N_CLASSES + 2, tbl_cols=-1, tbl_width_chars=200, float_precision=4,
                       tbl_hide_dataframe_shape=True, fmt_str_lengths=80):
            return str(self.decision_table_)

    def __repr__(self) -> str:
        return (f"GatedStage({self.stage.get('type')!r}, gate={self.gate!r}, folds={self.folds!r}, seed={self.seed!r}, "
                f"confidence={self.confidence!r})")
