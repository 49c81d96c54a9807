"""calib rerank: fit a matchability reranker on dev detections, apply it elsewhere."""
from __future__ import annotations

import argparse

from calib.cli import add_scale_args

FIT_EPILOG = """\
what it does:
  1. scores DETS against GT (dcase2026) and labels each detection matchable when its best soft IoU
     with a same-class GT in its frame is >= --iou (0.25);
  2. computes the features (list them: 'calib rerank features');
  3. cross-fits --folds models grouped by clip or by recording site (--group site reads the site from
     the GT split folders, e.g. dev-train-sony), giving an out-of-fold score for every detection;
  4. fits the final model on everything and prints the dev macro mAP of the raw, in-sample and
     out-of-fold scores. The out-of-fold figure is the honest estimate of what the reranker will
     do on new clips; the in-sample one is optimistic.

writes MODEL_DIR/: model.lgb.txt or model.hgb.json (the trees, as text/JSON), reranker.json (features,
their versions, library versions, parameters), oof.parquet, report.json (mAPs, feature importances,
per-class calibration error) and reliability.png.

examples:
  calib rerank fit dev.parquet --truth data/gt --out models/rr
  calib rerank fit dev.parquet --truth truth.parquet --out models/rr --model hgb --folds 2 --group site
  calib rerank fit dev.parquet --truth data/gt --out models/rr-mine --feature-module mypkg.feats --features default,my_feat"""

APPLY_EPILOG = """\
the output keeps every column; 'score' becomes the reranked probability of being matchable (what
'calib export' writes) and the upstream score stays in 'score_raw'. The model refuses to load when a
feature it was trained on is missing here or has changed version, or when its LightGBM major version
differs from the installed one. A model folder is data: the feature modules its reranker.json lists
are imported only with --feature-module / --allow-import (or as installed 'calib.features' entry points).

examples:
  calib rerank apply test.parquet --model models/rr --out test-reranked.parquet
  calib export test-reranked.parquet --out submission/
  calib rerank apply test.parquet --model models/rr-mine --feature-module mypkg.feats --out test-mine.parquet"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "rerank", help="fit / apply a gradient-boosted reranker of detections (matchability)",
        description="Learn, on dev detections with ground truth, the probability that a detection is matchable "
        "(overlaps a same-class GT), and use it as the new score. Sub-commands: fit, apply, features.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    rs = p.add_subparsers(dest="rerank_command", metavar="{fit,apply,features}")

    f = rs.add_parser("fit", help="fit on dev detections with ground truth, with cross-fitted estimates",
                      description="Fit a reranker on DETS with ground truth GT.", epilog=FIT_EPILOG,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("detections", metavar="DETS.parquet", help="detections table (calib ingest)")
    f.add_argument("--truth", required=True, metavar="GT", help="GT folder (<seq>_std.json, split sub-folders "
                   "allowed) or a truth table (calib ingest --truth)")
    f.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder for the model and its report")
    f.add_argument("--model", choices=("lightgbm", "hgb"), default="lightgbm",
                   help="LightGBM (default) or scikit-learn HistGradientBoosting")
    f.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5; 0 or 1: none)")
    f.add_argument("--group", choices=("clip", "site"), default="clip",
                   help="what a fold holds whole: clips (default) or recording sites (one fold per site at most)")
    f.add_argument("--features", default="default", metavar="LIST",
                   help="comma-separated feature names; 'default' is the default set, 'all' every feature "
                   "(the train-only gates closure,diffuseness are opt-in)")
    f.add_argument("--feature-module", action="append", default=[], metavar="MODULE",
                   help="import path of a module registering extra features with @features.feature (repeatable)")
    f.add_argument("--iou", type=float, default=0.25, help="matchable threshold on the best soft IoU (0.25)")
    f.add_argument("--calibration", choices=("none", "isotonic", "sigmoid", "temperature"), default="none",
                   help="post-calibration on the clip-grouped validation split; isotonic creates ties, which "
                   "change AP")
    f.add_argument("--system", metavar="NAME", help="use only this system of DETS")
    add_scale_args(f, "the labels (DETS scored against GT, per clip)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--threads", type=int, default=2, help="threads for the model (fixed, for determinism)")
    g = f.add_argument_group("model parameters (defaults from the report)")
    g.add_argument("--n-estimators", type=int, default=120)
    g.add_argument("--max-depth", type=int, default=6)
    g.add_argument("--num-leaves", type=int, default=31)
    g.add_argument("--learning-rate", type=float, default=0.1)
    g.add_argument("--l2", type=float, default=1.0)
    g.add_argument("--min-samples-leaf", type=int, default=100)
    g.add_argument("--validation-fraction", type=float, default=0.15,
                   help="share of training rows (whole clips) held out for early stopping and calibration")
    g.add_argument("--patience", type=int, default=20, help="early-stopping rounds without improvement")
    g.add_argument("--no-early-stopping", action="store_true")
    f.set_defaults(func=run)

    a = rs.add_parser("apply", help="rescore detections with a fitted model",
                      description="Replace 'score' by the model's probability of matchable.", epilog=APPLY_EPILOG,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("detections", metavar="DETS.parquet")
    a.add_argument("--model", required=True, metavar="MODEL_DIR")
    a.add_argument("--out", required=True, metavar="OUT.parquet")
    a.add_argument("--feature-module", action="append", default=[], metavar="MODULE",
                   help="import MODULE, which registers the model's custom features (as given to fit; repeatable)")
    a.add_argument("--allow-import", action="append", default=[], metavar="MODULE",
                   help="let the model folder's reranker.json import MODULE (or the modules of package MODULE) "
                   "when it lists it among its feature modules; a model folder is data and imports nothing "
                   "otherwise (installed 'calib.features' entry points excepted)")
    a.set_defaults(func=run)

    ls = rs.add_parser("features", help="list the registered features and what each measures")
    ls.add_argument("--feature-module", action="append", default=[], metavar="MODULE")
    ls.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args) -> int:
    return {"fit": _fit, "apply": _apply, "features": _features}[args.rerank_command](args)


def _features(args) -> int:
    import features as F
    from calib.io.errors import InputError

    try:
        F.load_feature_modules(args.feature_module)
    except F.FeatureError as e:
        raise InputError("--feature-module", str(e)) from None
    defaults = set(F.default_features())
    for f in F.registry().values():
        tags = [t for t, on in (("default", f.name in defaults), ("train-only", f.train_only)) if on]
        print(f"{f.name}  [{', '.join(tags) or 'opt-in'}; v{f.version}; {f.module}]")
        print("    " + " ".join(f.doc.split()))
    return 0


def _read_truth(path: str):
    """(truth table, ``clip, split`` of every GT clip: files with no annotation too)."""
    from pathlib import Path

    import polars as pl

    from calib.io.dcase import read_truth
    from calib.tables import read_table, table_clips

    if Path(path).is_dir():
        got = read_truth(path, progress=False)
        truth, clips = got.table, got.clips
    else:
        truth, clips = read_table(path, "truth"), table_clips(path)
    return truth, pl.DataFrame({"clip": list(clips), "split": list(clips.values())},
                               schema={"clip": pl.String, "split": pl.String}).sort("clip")


def _fit(args) -> int:
    import polars as pl

    from calib.io.errors import InputError
    from calib.cli import scale_from
    from calib.rerank.pipeline import fit_reranker, publish_folder
    from calib.tables import read_table

    dets = read_table(args.detections, "detections")
    if args.system:
        if args.system not in set(dets.get_column("system").unique().to_list()):
            raise InputError(args.detections, f"no system {args.system!r}")
        dets = dets.filter(pl.col("system") == args.system)
    truth, gt_clips = _read_truth(args.truth)
    from features import FeatureError

    try:
        with scale_from(args):
            result = fit_reranker(
                dets, truth, features=args.features, feature_modules=args.feature_module, iou_threshold=args.iou,
                folds=args.folds, group=args.group, jobs=args.jobs, model=args.model, n_estimators=args.n_estimators,
                max_depth=args.max_depth, num_leaves=args.num_leaves, learning_rate=args.learning_rate, l2=args.l2,
                min_samples_leaf=args.min_samples_leaf, early_stopping=not args.no_early_stopping,
                validation_fraction=args.validation_fraction, patience=args.patience, calibration=args.calibration,
                seed=args.seed, num_threads=args.threads, gt_clips=gt_clips)
    except (ValueError, FeatureError) as e:
        raise InputError(args.detections, str(e)) from e
    try:
        publish_folder(args.out, result.save)
    except ValueError as e:
        raise InputError(args.out, str(e)) from e
    print(summary(result.report))
    print(f"wrote {args.out}")
    return 0


def summary(report: dict) -> str:
    lines = [f"{report['n_labelled']} labelled detections ({report['positive_rate']:.1%} matchable), "
             f"{report['n_iter']} trees; {report['cross_fitting']['folds']} folds by {report['cross_fitting']['group']}"]
    for system, maps in report.get("dev_mAP", {}).items():
        parts = [f"{k} {v:.4f}" for k, v in maps.items() if isinstance(v, float)]
        lines.append(f"dev macro mAP [{system}]: " + ", ".join(parts))
    top = list(report["feature_importance_gain"].items())[:5]
    lines.append("top features (gain): " + ", ".join(f"{k}" for k, _ in top))
    return "\n".join(lines)


def _apply(args) -> int:
    from calib.io.errors import InputError
    from calib.rerank.pipeline import ModelMismatchError, RerankModel
    from calib.tables import read_table, table_clips, write_table

    import features as F

    try:
        with F.allowed_imports(args.allow_import):
            model = RerankModel.load(args.model, args.feature_module)
    except (ModelMismatchError, F.FeatureError) as e:
        raise InputError(args.model, str(e)) from e
    dets = read_table(args.detections, "detections")
    out = model.apply(dets)
    write_table(out, args.out, "detections", reranker_model=model.fingerprint(),
                clips=table_clips(args.detections))  # the input's clips without rows stay listed
    print(f"reranked {out.height} detections -> {args.out}")
    return 0
