"""Per-class max-envelope selection: each class from the system that scores it best on dev.

Choosing on dev and reporting on dev flatters the result (the choice has seen the answers), so the
module also offers two honest estimates: :func:`cross_fitted` (choose on K-1 clip folds, score
the held-out fold, every clip scored once by a choice that never saw it) and :func:`site_held_out`
(choose on the clips of one recording site, score those of another).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import polars as pl

from calib.constants import CLASS_NAMES, N_CLASSES, PROTOCOLS
from calib.stages.base import Param, Stage, Tables, declare, register
from calib.stages.fuse._common import empty_detections, renumber, stack_systems

OUT_EXTRA = {"score_raw": pl.Float64, "fuse_source": pl.String}


def choose_per_class(metrics: pl.DataFrame, eps: float = 1e-4) -> pl.DataFrame:
    """The per-class choice from a table of ``system, class_id, mAP, pearson`` (mAP null or NaN
    where the class has no ground truth).

    Per class the system with the best mAP wins; systems within ``eps`` of the best are tied and
    the higher Pearson (a missing one counts lowest) breaks the tie, then the system name. A
    class without ground truth goes to the system with the best macro mAP. Returns one row per
    class 0..12: class_id, class_name, system, mAP, pearson, runner_up (best other system),
    margin (chosen mAP minus the runner-up's), reason ("mAP", "pearson", "name", "no truth")."""
    m = metrics.select("system", "class_id", pl.col("mAP").cast(pl.Float64).fill_nan(None),
                       pl.col("pearson").cast(pl.Float64).fill_nan(None))
    systems = sorted(m.get_column("system").unique().to_list())
    macro = (m.group_by("system").agg(pl.col("mAP").mean().alias("macro"))
             .with_columns(pl.col("macro").fill_null(-math.inf)).sort(["macro", "system"], descending=[True, False]))
    fallback = macro.get_column("system")[0] if systems else None
    rows = []
    for cls in range(N_CLASSES):
        c = m.filter((pl.col("class_id") == cls) & pl.col("mAP").is_not_null())
        if c.height == 0:
            if fallback is None:
                continue
            f = m.filter((pl.col("class_id") == cls) & (pl.col("system") == fallback))
            rows.append((cls, fallback, None, f.get_column("pearson").max() if f.height else None, None, None,
                         "no truth"))
            continue
        best = c.get_column("mAP").max()
        tied = (c.filter(pl.col("mAP") >= best - eps)
                .with_columns(pl.col("pearson").fill_null(-math.inf).alias("_p"))
                .sort(["_p", "mAP", "system"], descending=[True, True, False]))
        pick = tied.row(0, named=True)
        others = c.filter(pl.col("system") != pick["system"]).sort(["mAP", "system"], descending=[True, False])
        runner = others.row(0, named=True) if others.height else None
        if tied.height == 1:
            reason = "mAP"
        elif tied.get_column("_p").n_unique() > 1 and tied.get_column("_p")[0] > tied.get_column("_p")[1]:
            reason = "pearson"
        else:
            reason = "name"
        rows.append((cls, pick["system"], pick["mAP"], pick["pearson"], runner and runner["system"],
                     None if runner is None else pick["mAP"] - runner["mAP"], reason))
    schema = {"class_id": pl.Int64, "system": pl.String, "mAP": pl.Float64, "pearson": pl.Float64,
              "runner_up": pl.String, "margin": pl.Float64, "reason": pl.String}
    out = pl.DataFrame(rows, schema=schema, orient="row")
    return out.with_columns(pl.col("class_id").replace_strict(dict(enumerate(CLASS_NAMES)), return_dtype=pl.String)
                            .alias("class_name")).select("class_id", "class_name", *list(schema)[1:])


def _class_table(det: pl.DataFrame, truth: pl.DataFrame, protocol: str,
                 clips: Sequence[str] | None = None) -> pl.DataFrame:
    """``class_id, mAP, pearson`` of ``det`` on the truth's clips or ``clips``
    (:func:`calib.score.facade.class_scores`)."""
    from calib.score import facade  # looked up per call: tests stand a simpler scorer in

    return facade.class_scores(det, truth, protocol=protocol, gt_clips=clips).class_table()


def system_metrics(systems: Mapping[str, pl.DataFrame], truth: pl.DataFrame, protocol: str,
                   clips: Sequence[str] | None = None) -> pl.DataFrame:
    """``system, class_id, mAP, pearson`` of every system, scored on the truth's clips (or on
    ``clips``: clips with a GT file, some maybe without annotation)."""
    clips = sorted(truth.get_column("clip").unique().to_list() if clips is None else clips)
    parts = [_class_table(det.filter(pl.col("clip").is_in(clips)), truth, protocol, clips)
             .with_columns(pl.lit(name, pl.String).alias("system")) for name, det in sorted(systems.items())]
    if not parts:
        return pl.DataFrame(schema={"system": pl.String, "class_id": pl.Int64, "mAP": pl.Float64,
                                    "pearson": pl.Float64})
    return pl.concat(parts).select("system", "class_id", "mAP", "pearson")


def envelope(systems: Mapping[str, pl.DataFrame], choice: Mapping[int, str], system_name: str) -> pl.DataFrame:
    """Each class's detections taken from its chosen system (classes without a choice dropped)."""
    missing = sorted(set(choice.values()) - set(systems))
    if missing:
        raise ValueError(f"max_envelope: chosen system(s) {missing} absent from the systems given "
                         f"({sorted(systems)})")
    if not choice or not systems:
        return empty_detections(OUT_EXTRA)
    pick = pl.DataFrame({"class_id": list(choice), "fuse_source": list(choice.values())},
                        schema={"class_id": pl.Int64, "fuse_source": pl.String})
    det = stack_systems({k: v for k, v in systems.items() if k in set(choice.values())})
    out = det.join(pick, on=["class_id", "fuse_source"], how="semi")
    return renumber(out, system_name, ["clip", "frame", "fuse_source", "det_id"])


@register("max_envelope")
class MaxEnvelope(Stage):
    """Per class, keep the detections of the system with the best dev class mAP.

    ``fit`` scores every system of ``systems`` against ``truth`` (``protocol``), and per class picks
    the best mAP, breaking ties within ``eps`` by the class Pearson; classes without ground truth
    go to the system with the best macro mAP. Learned: ``choice_`` (class id -> system) and
    ``choice_table_`` (a polars DataFrame: class, system, mAP, Pearson, runner-up, margin, reason;
    print it with :meth:`report`). ``apply`` builds ``detections`` from the systems given (dev or
    any other set), each class from its chosen system (system ``system_name``, det_id renumbered
    per clip, ``fuse_source`` = the system it came from). Choosing on dev flatters dev: use
    :func:`cross_fitted` or :func:`site_held_out` for an honest estimate.
    """

    needs_tables = ("systems", "truth")
    needs_columns = ("clip", "frame", "class_id", "score", "points")
    adds_columns = ("score_raw", "fuse_source")
    learns = True
    learned_attributes = {"metrics_": pl.DataFrame, "choice_table_": pl.DataFrame, "choice_": dict}

    PARAMS = declare(
        eps=Param(float, 1e-4, "class mAPs closer than this are a tie, broken by the class Pearson", unit="mAP", ge=0),
        protocol=Param(str, "dcase2026", "the scoring protocol of the per-class choice learned in fit",
                       choices=PROTOCOLS),
        system_name=Param(str, "max_envelope", "the system name of the fused detections"),
    )

    def fit(self, tables: Tables) -> "MaxEnvelope":
        self.check_params()
        self.metrics_ = system_metrics(tables["systems"], tables["truth"], self.protocol,
                                       tables.truth_clips.get_column("clip").to_list())
        self.choice_table_ = choose_per_class(self.metrics_, float(self.eps))
        self.choice_ = dict(zip(self.choice_table_.get_column("class_id").to_list(),
                                self.choice_table_.get_column("system").to_list()))
        return self

    def apply(self, tables: Tables) -> Tables:
        if not hasattr(self, "choice_"):
            raise RuntimeError("max_envelope: fit it on dev tables (systems + truth) before apply")
        return tables.replace(detections=envelope(tables["systems"], self.choice_, self.system_name))

    def report(self) -> str:
        """The per-class choice table as text."""
        if not hasattr(self, "choice_table_"):
            raise RuntimeError("max_envelope: not fitted")
        with pl.Config(tbl_rows=N_CLASSES + 1, tbl_cols=-1, tbl_width_chars=160, float_precision=4,
                       tbl_hide_dataframe_shape=True):
            return str(self.choice_table_)


def _macro(metrics: pl.DataFrame) -> float:
    v = metrics.get_column("mAP").cast(pl.Float64).fill_nan(None).drop_nulls()
    return float(v.mean()) if v.len() else float("nan")


def clip_folds(clips, n_folds: int, seed: int) -> dict[str, int]:
    """Fold (0..n_folds-1) of each clip: a seeded permutation of the sorted clips dealt round robin."""
    clips = sorted(set(clips))
    if n_folds < 2 or n_folds > len(clips):
        raise ValueError(f"cross-fitting needs 2 <= n_folds <= clips ({len(clips)}), got {n_folds}")
    order = np.random.default_rng(seed).permutation(len(clips))
    return {clips[i]: int(k % n_folds) for k, i in enumerate(order)}


def cross_fitted(systems: Mapping[str, pl.DataFrame], truth: pl.DataFrame, *, n_folds: int = 5, seed: int = 0,
                 eps: float = 1e-4, protocol: str = "dcase2026") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Honest estimate of the envelope: for each of ``n_folds`` clip folds, choose on the other
    folds and take the held-out fold's envelope; the held-out parts together are scored once.

    Returns (summary, choices): summary rows ``estimate, macro_mAP`` for each system alone, the
    in-sample envelope (chosen and scored on all clips) and the cross-fitted envelope; choices
    has one row per fold and class (fold, class_id, system)."""
    folds = clip_folds(truth.get_column("clip").to_list(), n_folds, seed)
    fold_of = pl.DataFrame({"clip": list(folds), "_fold": list(folds.values())})
    held, choices = [], []
    for k in range(n_folds):
        train_clips = fold_of.filter(pl.col("_fold") != k).get_column("clip").implode()
        test_clips = fold_of.filter(pl.col("_fold") == k).get_column("clip").implode()
        stage = MaxEnvelope(eps=eps, protocol=protocol).fit(Tables(
            systems={n: d.filter(pl.col("clip").is_in(train_clips)) for n, d in systems.items()},
            truth=truth.filter(pl.col("clip").is_in(train_clips))))
        held.append(envelope({n: d.filter(pl.col("clip").is_in(test_clips)) for n, d in systems.items()},
                             stage.choice_, "cross_fitted"))
        choices.append(stage.choice_table_.select(pl.lit(k).alias("fold"), "class_id", "system"))
    cross = pl.concat(held, how="diagonal_relaxed")
    in_sample = MaxEnvelope(eps=eps, protocol=protocol).fit(Tables(systems=systems, truth=truth))
    rows = [(f"system:{n}", _macro(_class_table(d, truth, protocol))) for n, d in sorted(systems.items())]
    rows.append(("envelope:in-sample",
                 _macro(_class_table(envelope(systems, in_sample.choice_, "in_sample"), truth, protocol))))
    rows.append((f"envelope:cross-fitted({n_folds} folds)",
                 _macro(_class_table(cross, truth, protocol))))
    return (pl.DataFrame(rows, schema={"estimate": pl.String, "macro_mAP": pl.Float64}, orient="row"),
            pl.concat(choices))


def site_held_out(systems: Mapping[str, pl.DataFrame], truth: pl.DataFrame, *, fit_site: str = "sony",
                  test_site: str = "tau", eps: float = 1e-4, protocol: str = "dcase2026") -> pl.DataFrame:
    """Choose on the clips whose truth ``split`` contains ``fit_site``, score on those whose split
    contains ``test_site``. Rows ``estimate, macro_mAP``: each system and the envelope on the test
    site."""
    fit_truth = truth.filter(pl.col("split").str.to_lowercase().str.contains(fit_site.lower(), literal=True))
    test_truth = truth.filter(pl.col("split").str.to_lowercase().str.contains(test_site.lower(), literal=True))
    for site, t in ((fit_site, fit_truth), (test_site, test_truth)):
        if t.height == 0:
            raise ValueError(f"site-held-out check: no truth clip has {site!r} in its split "
                             f"(splits: {sorted(truth.get_column('split').unique().to_list())})")
    fit_clips = fit_truth.get_column("clip").unique().implode()
    test_clips = test_truth.get_column("clip").unique().implode()
    stage = MaxEnvelope(eps=eps, protocol=protocol).fit(Tables(
        systems={n: d.filter(pl.col("clip").is_in(fit_clips)) for n, d in systems.items()}, truth=fit_truth))
    test_systems = {n: d.filter(pl.col("clip").is_in(test_clips)) for n, d in systems.items()}
    rows = [(f"system:{n}@{test_site}", _macro(_class_table(d, test_truth, protocol)))
            for n, d in sorted(test_systems.items())]
    rows.append((f"envelope:chosen@{fit_site}->{test_site}",
                 _macro(_class_table(envelope(test_systems, stage.choice_, "site"), test_truth, protocol))))
    return pl.DataFrame(rows, schema={"estimate": pl.String, "macro_mAP": pl.Float64}, orient="row")
