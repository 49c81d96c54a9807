"""A dev clip whose GT file holds no annotation is still a scored clip (the official script scores
every GT file: each prediction there is a false positive). It must stay in the recipe's fit and
evaluate clip sets, in the run's metrics, in the portfolio's site split and in the labels of the
learning stages; dropping it would raise the metrics (the regression this file guards)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from calib.recipe import Recipe, run_recipe
from calib.recipe.inputs import load_inputs
from calib.score import score

EMPTY = "fold4_room24_mix006"  # a dev-test-sony clip of the synth_small set
EMPTY_FILE = f"gt/dev-test-sony/{EMPTY}_std.json"


@pytest.fixture(scope="module")
def data(synth_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("empty_gt") / "data"
    shutil.copytree(synth_small, root)
    (root / EMPTY_FILE).write_text(json.dumps({"annotations": []}))
    return root


def _recipe(**over) -> Recipe:
    d = {"name": "empty-gt", "description": "threshold only",
         "inputs": {"gt": "gt", "systems": {"lowthr": "systems/lowthr"}},
         "splits": {"fit": ["dev-train-sony", "dev-train-tau"], "evaluate": ["dev-test-sony", "dev-test-tau"]},
         "stages": [{"type": "threshold", "threshold": 0.2}],
         "scoring": {"protocol": "dcase2026"}}
    d.update(over)
    return Recipe.from_dict(d)


def test_inputs_list_the_clip_with_its_split(data, tmp_path):
    tables = load_inputs(_recipe(), data, cache_dir=tmp_path / "cache").tables
    assert EMPTY not in tables["truth"].get_column("clip").to_list()  # no row...
    clips = dict(tables.truth_clips.iter_rows())
    assert clips[EMPTY] == "dev-test-sony" and len(clips) == 8  # ...but a GT clip of its split


@pytest.mark.slow
def test_run_scores_the_clip_as_the_official_folder_scoring_does(data, tmp_path):
    out = tmp_path / "run"
    res = run_recipe(_recipe(), out, base_dir=data, log=lambda s: None)
    assert EMPTY in res.eval_clips and len(res.eval_clips) == 4
    # oracle: the official file-pairing scorer on the run's own DCASE files and the GT folder
    # (it reads the empty GT file as a scored clip)
    official = score(out / "dcase", data / "gt", clips=res.eval_clips)
    assert official["macro_mAP"] == res.metrics["macro_mAP"]
    assert official["micro_mAP"] == res.metrics["micro_mAP"]
    # the clip has detections, all false positives: leaving it out scores higher
    kept = [c for c in res.eval_clips if c != EMPTY]
    assert score(out / "dcase", data / "gt", clips=kept)["macro_mAP"] > res.metrics["macro_mAP"]
    # the per-split metrics hold it too
    sony = sorted(f.name.removesuffix("_std.json") for f in (data / "gt" / "dev-test-sony").glob("*.json"))
    assert EMPTY in sony and len(sony) == 2
    assert res.split_metrics["dev-test-sony"]["macro_mAP"] == score(out / "dcase", data / "gt", clips=sony)["macro_mAP"]


def test_rerank_labels_its_detections_unmatched(data, tmp_path):
    from calib.rerank.scoring import best_iou_table

    tables = load_inputs(_recipe(), data, cache_dir=tmp_path / "cache").tables
    det = tables["detections"].filter(pl.col("clip").is_in([EMPTY, "fold4_room23_mix002"]))
    truth = tables["truth"]
    without = best_iou_table(det, truth)
    assert EMPTY not in without.get_column("clip").to_list()  # not known to have GT: no label
    with_clips = best_iou_table(det, truth, gt_clips=tables.truth_clips.get_column("clip").to_list())
    mine = with_clips.filter(pl.col("clip") == EMPTY)
    n = det.filter((pl.col("clip") == EMPTY) & pl.col("class_id").is_between(0, 12)).height
    assert n > 0 and mine.height == n and (mine.get_column("best_iou") == 0.0).all()
    other = with_clips.filter(pl.col("clip") != EMPTY)
    assert other.equals(without)  # the clips with annotations keep their labels


def test_fit_and_evaluate_sets_of_a_recipe(data, tmp_path):
    from calib.recipe import clip_sets

    tables = load_inputs(_recipe(), data, cache_dir=tmp_path / "cache").tables
    fit, evaluate = clip_sets(_recipe(), tables)
    assert EMPTY in evaluate and EMPTY not in fit and len(fit) == len(evaluate) == 4
    # a truth table from an older calib (no clip list) still gives the rows' clips
    bare = tables.replace()
    del bare["truth_clips"]
    assert EMPTY not in clip_sets(_recipe(), bare)[1]
    assert np.array_equal(sorted(clip_sets(_recipe(), bare)[0]), sorted(fit))
