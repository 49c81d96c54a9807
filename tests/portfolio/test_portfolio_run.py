"""A portfolio end to end on tiny data with test-only stages and a hand-checkable scorer: every
estimate equals an independent computation of the toy pipeline, the choice follows the rules."""
from __future__ import annotations

import json
import math

import pytest

from calib.portfolio import choose, fold_assignment, load_grid, run_portfolio
from calib.recipe import dump_recipe
from tests.recipe.toys import GT, PRED, recipe_dict, toy_scorer, toy_stages, write_data

CLIPS = ["s1", "s2", "t1", "t2"]


def oracle_scores(fit_clips, bias_on: bool, factor: float) -> dict:
    """(clip, frame, class) -> score of the toy pipeline, computed directly."""
    fit_gt = [c for (cl, f, c) in GT if cl in fit_clips]
    share = {c: fit_gt.count(c) / len(fit_gt) for c in set(fit_gt)}
    out = {}
    for cl, f, c, s in PRED:
        v = (s + 0.25 + (share.get(c, 0.0) if bias_on else 0.0)) * factor
        out[(cl, f, c)] = round(v, 6)
    return out


def oracle_metric(scores: dict, clips) -> float:
    gt_keys = {(cl, f, c) for (cl, f, c) in GT if cl in clips}
    hits = [v for k, v in scores.items() if k[0] in clips and k in gt_keys]
    return sum(hits) / len(hits)


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory):
    with toy_stages():
        root = tmp_path_factory.mktemp("pf")
        data = write_data(root / "data")
        d = recipe_dict()
        d["emit"]["digits"] = 6
        dump_recipe(d, data / "recipe.toml")
        (data / "grid.toml").write_text(
            'base = "recipe.toml"\nfolds = 2\nseed = 0\nfragile_gap = 0.02\n[axes]\n'
            '"stages.t_bias.enabled" = [true, false]\n"stages.t_scale.factor" = [0.5, 1.0]\n')
        grid, base = load_grid(data / "grid.toml")
        log = []
        res = run_portfolio(grid, base, root / "out", base_dir=data, scorer=toy_scorer, log=log.append)
        yield res, root / "out", log, grid


def test_estimates_match_the_toy_pipeline_computed_directly(portfolio):
    res, out, _, grid = portfolio
    folds = fold_assignment(CLIPS, 2, seed=0)
    rows = {r["variant"]: r for r in json.loads((out / "estimates.json").read_text())}
    settings = {"v1": (True, 0.5), "v2": (True, 1.0), "v3": (False, 0.5), "v4": (False, 1.0)}
    for i, (name, (bias, factor)) in enumerate(settings.items()):
        row = rows[f"v0{i + 1}"]
        assert row["settings"] == f"t_bias.enabled={'on' if bias else 'off'}, t_scale.factor={factor}"
        in_sample = oracle_metric(oracle_scores(CLIPS, bias, factor), CLIPS)
        pooled = {}
        for f in (0, 1):
            held = [c for c in CLIPS if folds[c] == f]
            sc = oracle_scores([c for c in CLIPS if folds[c] != f], bias, factor)
            pooled |= {k: v for k, v in sc.items() if k[0] in held}
        oof = oracle_metric(pooled, CLIPS)
        site = oracle_metric(oracle_scores(["s1", "s2"], bias, factor), ["t1", "t2"])
        assert row["in_sample_mAP"] == pytest.approx(in_sample, abs=1e-9)
        assert row["oof_mAP"] == pytest.approx(oof, abs=1e-9)
        assert row["site_mAP"] == pytest.approx(site, abs=1e-9)
        assert row["learned"] == ("t_bias" if bias else "")
        if not bias:
            assert row["gap"] == 0.0
    assert rows["v01"]["gap"] != 0.0  # the learning stage is optimistic in-sample here


def test_choice_and_outputs(portfolio):
    res, out, log, grid = portfolio
    expected, frag = choose([r.estimate() for r in res.results], max_systems=4, fragile_gap=0.02)
    pj = json.loads((out / "portfolio.json").read_text())
    assert [(c["variant"], c["role"]) for c in pj["chosen"]] == [(c.name, c.role) for c in expected]
    assert [c["rank"] for c in pj["chosen"]] == list(range(1, len(expected) + 1))
    assert len(expected) == 4 and expected[0].role == "best"
    best = max(res.results, key=lambda r: r.estimate().oof)
    assert expected[0].name == best.variant.name
    assert pj["fragility"][0]["component"] == "t_bias"
    # per-variant outputs
    for v in ("v01", "v02", "v03", "v04"):
        vdir = out / "variants" / v
        m = json.loads((vdir / "metrics.json").read_text())
        assert set(m) >= {"in_sample", "out_of_fold", "site_held_out", "dev_clips", "all_clips", "labeled_clips"}
        assert m["dev_clips"] == CLIPS and (vdir / "detections.parquet").exists() and (vdir / "recipe.toml").exists()
    report = (out / "report.md").read_text()
    assert "## Chosen systems" in report and f"1. **{expected[0].name}**" in report
    assert "| v03 | t_bias.enabled=off, t_scale.factor=0.5 | – |" in report
    for png in ("estimates.png", "per_class_ap.png", "file_sizes.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(line.startswith("system 1: ") for line in log)
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_variants_keep_no_table_the_cache_holds(portfolio):
    # each variant's submitted system sits in the stage cache (the emitter's entry): the results
    # keep its key, not the table, and the written file is what the cache gives back
    from calib.recipe.cache import StageCache
    from calib.tables import read_table

    res, out, _, _ = portfolio
    cache = StageCache(out / ".cache")
    for r in res.results:
        assert r.detections is None and cache.has(r.final_key)
        written = read_table(out / "variants" / r.variant.name / "detections.parquet", "detections")
        assert written.equals(r.load_detections(cache))


def test_rerun_is_cached_and_identical(portfolio, tmp_path):
    res, out, _, grid = portfolio
    with toy_stages() as toys:
        before = (out / "estimates.json").read_bytes(), (out / "portfolio.json").read_bytes(), \
            (out / "estimates.png").read_bytes()
        base = out.parent / "data" / "recipe.toml"
        run_portfolio(grid, base, out, base_dir=out.parent / "data", scorer=toy_scorer, log=lambda s: None)
        assert all(c.applied == 0 for c in toys.values())  # every stage output came from the cache
        after = (out / "estimates.json").read_bytes(), (out / "portfolio.json").read_bytes(), \
            (out / "estimates.png").read_bytes()
    assert before == after


def test_a_grid_whose_recipe_names_a_module_is_refused_before_writing(tmp_path, capsys):
    """The portfolio command follows the run command's rule: a recipe imports nothing unless the
    module is allowed (--allow-import); refused before the output folder is made."""
    from calib.cli.main import main

    with toy_stages():
        data = write_data(tmp_path / "data")
        d = recipe_dict()
        d["stages"].insert(0, {"type": "rerank", "feature_modules": "pf_feats_never_test", "enabled": False})
        dump_recipe(d, data / "recipe.toml")
        (data / "grid.toml").write_text('base = "recipe.toml"\nfolds = 2\n[axes]\n"stages.rerank.enabled" = [true]\n')
        assert main(["portfolio", str(data / "grid.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "names the module 'pf_feats_never_test'" in err and "--allow-import pf_feats_never_test" in err
    assert not (tmp_path / "out").exists()


def test_chains_on_threads_give_the_same_estimates_scoring_each_output_once(portfolio, tmp_path):
    """With two jobs, chains too small for worker processes run on two threads and keep their
    metrics: the estimates take them instead of scoring the same output on the same clips again
    (only the pooled out-of-fold detections are new), and every file is the same as one job's."""
    from calib.score.parallel import scale_out

    res, out, _, grid = portfolio
    calls = []

    def counting(det, truth, scoring, *, gt_clips=None):
        calls.append((tuple(sorted(det.select("clip", "frame", "class_id", "score").iter_rows())), tuple(gt_clips)))
        return toy_scorer(det, truth, scoring, gt_clips=gt_clips)

    with toy_stages(), scale_out(jobs=2, quiet=True):
        log = []
        run_portfolio(grid, out.parent / "data" / "recipe.toml", tmp_path / "two", base_dir=out.parent / "data",
                      scorer=counting, log=log.append)
    assert any("chain(s) on 2 threads of this process" in line for line in log)
    assert len(calls) == len(set(calls))  # no output scored twice on the same clips
    for name in ("estimates.json", "portfolio.json", "estimates.csv"):
        assert (tmp_path / "two" / name).read_bytes() == (out / name).read_bytes()
