"""Prediction-side reuse (calib.score.pred_cache): a scored table's subsets and re-scored copies are
scored from the cached rows with nothing rendered, and give the reference engine's numbers and
match tables; the pieces (content keys, row lookup, merging, one-line assignments, Pearson rows,
the pool decision) on cases whose answer is known."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy.optimize import linear_sum_assignment

from calib.score import score, score_tables
from calib.score.cache import GT_CACHE
from calib.score.columns import ClipAnnotations
from calib.score.pred_cache import PredIoUs, find_rows, merge, sort_keys

KEYS = ("macro_mAP", "micro_mAP", "macro_AP_per_thr", "micro_AP_per_thr", "macro_pearson_r", "micro_pearson_r",
        "micro_pearson_n", "per_class")


def same_result(got, want) -> None:
    for k in KEYS:
        assert json.dumps(got[k]) == json.dumps(want[k]), k  # NaN-safe, bit for bit
    assert got.matches.equals(want.matches)
    assert got.gt_matches.equals(want.gt_matches)


@pytest.fixture(scope="module")
def tables(golden):
    """Golden grid and dense detections (ties, multi-detection buckets, seam and border geometry)
    and the GT, cut to their first 14 frames (the reference engine stays quick)."""
    from calib.io.dcase import ingest_predictions, ingest_truth

    dets = pl.concat([ingest_predictions([golden / s], progress=False)[0] for s in ("grid", "dense")])
    truth, _ = ingest_truth(golden / "gt", progress=False)
    return dets.filter(pl.col("frame") < 14), truth.filter(pl.col("frame") < 14)


@pytest.fixture
def count_renders(monkeypatch):
    """Counts the prediction maps the fast engine renders (calib.score.fast.render_predictions)."""
    from calib.score import fast

    real, drawn = fast.render_predictions, []

    def counting(annotations):
        drawn.append(len(annotations))
        return real(annotations)

    monkeypatch.setattr(fast, "render_predictions", counting)
    return drawn


def variants(det: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """What threshold, cap, rerank and fold stages make of a table: subsets and new scores."""
    rng = np.random.default_rng(11)
    top1 = det.sort("score", descending=True).group_by(["clip", "frame", "class_id"], maintain_order=True).head(1)
    return {
        "threshold": det.filter(pl.col("score") >= 0.5),
        "cap 1 per frame and class": top1.sort(["clip", "det_id"]),
        "random half": det.filter(pl.Series(rng.random(det.height) < 0.5)),
        "one clip": det.filter(pl.col("clip") == det.get_column("clip").min()),
        # reranked: new scores with ties; the raw one kept as a column the scorer ignores
        "rescored": det.with_columns(pl.col("score").alias("score_raw"),
                                     pl.Series("score", np.round(rng.random(det.height), 1))),
        "empty": det.head(0),
    }


@pytest.mark.slow
@pytest.mark.parametrize("system", ["grid", "dense"])
def test_subsets_and_rescored_copies_come_from_cached_rows_with_nothing_rendered(tables, count_renders, system):
    det, truth = tables
    det = det.filter(pl.col("system") == system)
    GT_CACHE.clear()
    full = score_tables(det, truth)
    assert sum(count_renders) == full.work["maps_rendered"] > 0  # the first scoring renders
    same_result(full, score_tables(det, truth, engine="reference"))
    count_renders.clear()
    for name, v in variants(det).items():
        got = score_tables(v, truth, iou_thresholds=[0.1, 0.3, 0.5])
        assert count_renders == [] and got.work["maps_rendered"] == 0, name
        same_result(got, score_tables(v, truth, iou_thresholds=[0.1, 0.3, 0.5], engine="reference"))


def test_a_detection_repeated_is_computed_once_and_matched_as_the_reference(tables, count_renders):
    det, truth = tables
    det = det.filter(pl.col("system") == "grid")
    twice = pl.concat([det, det.with_columns(pl.col("det_id") + 10_000, pl.col("score") * 0.5)])
    GT_CACHE.clear()
    got = score_tables(twice, truth)
    GT_CACHE.clear()
    once = score_tables(det, truth)
    assert got.work["maps_rendered"] == once.work["maps_rendered"] > 0  # the copies cost no render
    same_result(got, score_tables(twice, truth, engine="reference"))


def test_rows_on_disk_serve_a_new_process(tables, tmp_path, count_renders):
    det, truth = tables
    det = det.filter(pl.col("system") == "dense")
    GT_CACHE.clear()
    first = score_tables(det, truth, cache_dir=tmp_path)
    files = sorted((tmp_path / "pred").glob("*.npz"))
    assert len(files) == truth.get_column("clip").n_unique()
    with np.load(files[0], allow_pickle=False) as z:  # plain arrays, no pickles
        assert set(z.files) == set(PredIoUs.FIELDS)
    GT_CACHE.clear()  # as a new process: memory empty
    count_renders.clear()
    same_result(score_tables(det, truth, cache_dir=tmp_path), first)
    sub = det.filter(pl.col("score") > 0.3)
    got = score_tables(sub, truth, cache_dir=tmp_path)
    assert count_renders == []
    same_result(got, score_tables(sub, truth, engine="reference"))
    files[0].write_bytes(b"not an npz")  # a broken entry is a miss, computed again
    GT_CACHE.clear()
    same_result(score_tables(det, truth, cache_dir=tmp_path), first)
    assert count_renders


def test_a_changed_gt_gets_new_rows(tables, count_renders):
    det, truth = tables
    det = det.filter(pl.col("system") == "grid")
    GT_CACHE.clear()
    score_tables(det, truth)
    count_renders.clear()
    moved = truth.with_columns(pl.when(pl.col("ann_id") == 0).then(pl.col("frame") + 1).otherwise(pl.col("frame"))
                               .alias("frame"))
    got = score_tables(det, moved)
    assert count_renders  # another GT clip digest: its rows are computed for it
    same_result(got, score_tables(det, moved, engine="reference"))


# ----------------------------------------------------------------------------------------------
def clip(polys_per_ann, frames=None, classes=None) -> ClipAnnotations:
    from calib.score import Annotation

    n = len(polys_per_ann)
    frames = frames or [0] * n
    classes = classes or [0] * n
    return ClipAnnotations.from_annotations(
        [Annotation(f, c, 0.5, tuple(np.asarray(p, dtype=np.float64) for p in polys), index=i)
         for i, (f, c, polys) in enumerate(zip(frames, classes, polys_per_ann))])


def test_render_keys_follow_content_only():
    a, b, c, d = [10.0, 20, 1], [11, 21, 0.5], [12, 19, 0.7], [30, 40, 0.2]
    third = np.float32(1 / 3)
    base = [[a, b, c, d]]
    cases = {
        "same": [[a, b, c, d]],
        "float32-equal x": [[[10.0 + 1e-12, 20, 1], b, c, d]],
        "x one float32 step up": [[[float(np.nextafter(np.float32(10), np.float32(11))), 20, 1], b, c, d]],
        "points swapped": [[b, a, c, d]],
        "split into two polygons": [[a, b], [c, d]],
        "split elsewhere": [[a, b, c], [d]],
        "an empty polygon more": [[a, b, c, d], []],
        "one point less": [[a, b, c]],
        "intensity": [[a, b, c, [30, 40, float(third)]]],
    }
    anns = clip([base] + list(cases.values()), frames=[3] * (len(cases) + 1), classes=[4] * (len(cases) + 1))
    keys = anns.render_keys()
    assert keys.dtype == np.uint64 and keys.shape == (len(cases) + 1, 2)
    equal = {name: bool((keys[i + 1] == keys[0]).all()) for i, name in enumerate(cases)}
    assert equal == {name: name in ("same", "float32-equal x") for name in cases}
    assert len({tuple(k) for k in keys[3:].tolist()}) == len(cases) - 2  # the different ones all differ
    other_bucket = clip([base, base], frames=[3, 4], classes=[4, 4]).render_keys()
    other_class = clip([base], frames=[3], classes=[5]).render_keys()
    assert not (other_bucket[1] == keys[0]).all() and not (other_class[0] == keys[0]).all()
    assert (other_bucket[0] == keys[0]).all()
    # a key does not depend on which rows were keyed with it, nor in what order
    fresh = clip([base] + list(cases.values()), frames=[3] * (len(cases) + 1), classes=[4] * (len(cases) + 1))
    np.testing.assert_array_equal(fresh.render_keys([5, 0, 2]), keys[[5, 0, 2]])
    np.testing.assert_array_equal(fresh.render_keys(), keys)


def test_find_rows_compares_both_lanes():
    table = np.array([[1, 5], [2, 1], [2, 7], [2, 9], [4, 0]], dtype=np.uint64)
    assert (sort_keys(table) == np.arange(5)).all()
    query = np.array([[2, 7], [2, 8], [4, 0], [4, 1], [0, 0], [1, 5], [2, 9], [9, 9]], dtype=np.uint64)
    assert find_rows(table, query).tolist() == [2, -1, 4, -1, -1, 0, 3, -1]
    assert find_rows(table[:0], query).tolist() == [-1] * 8


def rows(keys, lengths, first):
    lengths = np.asarray(lengths)
    n = int(lengths.sum())
    return PredIoUs(key=np.asarray(keys, dtype=np.uint64).reshape(-1, 2),
                    off=np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
                    iou=np.arange(first, first + n, dtype=np.float32), pearson=np.arange(first, first + n) + 0.5,
                    sources=np.array([f"src{first}"]))


def test_merge_keeps_the_new_row_of_a_key_in_both_and_sorts():
    old = rows([[1, 1], [3, 0]], [2, 1], 0)  # iou [0, 1], [2]
    new = rows([[3, 0], [2, 5]], [1, 3], 10)  # iou [10], [11, 12, 13]
    m = merge(old, new)
    assert m.key.tolist() == [[1, 1], [2, 5], [3, 0]]
    assert m.off.tolist() == [0, 2, 5, 6]
    assert m.iou.tolist() == [0, 1, 11, 12, 13, 10]
    assert m.pearson.tolist() == [0.5, 1.5, 11.5, 12.5, 13.5, 10.5]
    assert m.sources.tolist() == ["src0", "src10"]
    assert merge(None, new) is new and merge(old, None) is old


def test_one_line_buckets_are_assigned_as_scipy_assigns_them():
    """Buckets whose IoU matrix is one column or one row skip the solver: the first largest IoU
    wins. Checked against scipy on lines full of ties (equal values, zeros, one-element lines)."""
    from calib.score.fast import _single_line_assignment

    rng = np.random.default_rng(2)
    lines = [rng.choice(np.float32([0, 0.25, 0.5, 0.5]), size=int(rng.integers(1, 7))) for _ in range(3000)]
    owner = np.repeat(np.arange(len(lines)), [len(v) for v in lines])
    starts = np.cumsum([0] + [len(v) for v in lines[:-1]])
    won = _single_line_assignment(np.concatenate(lines), owner, len(lines)) - starts
    for v, w in zip(lines, won.tolist()):
        r, c = linear_sum_assignment(-v.reshape(-1, 1))  # a column: several predictions, one GT
        assert r.tolist() == [w] and c.tolist() == [0]
        r, c = linear_sum_assignment(-v.reshape(1, -1))  # a row: one prediction, several GT
        assert r.tolist() == [0] and c.tolist() == [w]


def test_pearson_rows_are_pearson_at_bit_for_bit():
    from calib.score.fast import pearson_at, pearson_rows

    rng = np.random.default_rng(9)
    for m in (0, 1, 2, 3, 8, 9, 127, 128, 129, 300, 1000, 4999):
        g = rng.random(m) + 0.01
        P = rng.random((6, m)) * rng.choice([0.0, 1.0], size=(6, 1))  # some rows constant (zero)
        P[1] = 0.3  # constant, not zero
        got = pearson_rows(g, P)
        want = np.array([pearson_at(g, p) for p in P])
        np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
    assert np.isnan(pearson_rows(np.full(5, 0.5), rng.random((3, 5)))).all()  # constant GT


# ----------------------------------------------------------------------------------------------
def test_a_tiny_job_starts_no_pool(tables, monkeypatch):
    import joblib

    det, truth = tables
    det = det.filter(pl.col("system") == "grid")

    def no_pool(*a, **k):
        raise AssertionError("a pool was started for a tiny job")

    monkeypatch.setattr(joblib, "Parallel", no_pool)
    GT_CACHE.clear()
    cold = score_tables(det, truth, jobs=2)  # cold: GT and predictions rendered, still small
    warm = score_tables(det, truth, jobs=2)
    assert not cold.work["pool"] and not warm.work["pool"]
    assert 0 < warm.work["estimated_seconds"] < cold.work["estimated_seconds"]
    same_result(warm, cold)


def test_work_above_the_threshold_runs_in_the_pool(tables, monkeypatch):
    from calib.score import parallel

    det, truth = tables
    det = det.filter(pl.col("system") == "grid")
    monkeypatch.setattr(parallel, "POOL_MIN_SECONDS", 0.0)
    GT_CACHE.clear()
    got = score_tables(det, truth, jobs=2, backend="threading")
    assert got.work["pool"]
    same_result(got, score_tables(det, truth))


def test_a_pooled_job_is_sent_the_gt_only_when_it_reads_it(tables, monkeypatch):
    """With GT maps cached, a clip's job needs its GT annotations only to render GT rows that a
    prediction it computes meets and that are not rendered yet: otherwise the workers are not sent
    them (a truth table's clip holds about a thousand points per frame), and the results stay the
    same."""
    from calib.score import api, parallel

    det, truth = tables
    monkeypatch.setattr(parallel, "POOL_MIN_SECONDS", 0.0)
    real, sent = api._fast_job, []

    def recording(clip, psrc, maps, gsrc, known, labels=False):
        sent.append((maps is not None, gsrc is not None))
        return real(clip, psrc, maps, gsrc, known, labels)

    monkeypatch.setattr(api, "_fast_job", recording)
    GT_CACHE.clear()
    grid = det.filter(pl.col("system") == "grid")
    cold = score_tables(grid, truth, jobs=2, backend="threading")
    assert cold.work["pool"] and sent and all(has_gt for _, has_gt in sent)  # maps not cached: rendered there
    sent.clear()
    warm = score_tables(grid, truth, jobs=2, backend="threading")
    assert sent and all(cached and not has_gt for cached, has_gt in sent)  # nothing to render: no GT sent
    same_result(warm, cold)
    sent.clear()
    dense = det.filter(pl.col("system") == "dense")  # other buckets and shapes: GT rows not drawn yet
    got = score_tables(dense, truth, jobs=2, backend="threading")
    assert any(cached and has_gt for cached, has_gt in sent)  # maps cached, some rows still to render
    GT_CACHE.clear()
    same_result(got, score_tables(dense, truth))


def test_a_fully_cached_prediction_file_is_estimated_as_parsing_only(golden, tmp_path):
    """Folders: the parent does not parse prediction files, so a warm re-score is recognised by the
    file's digest among the entry's sources."""
    GT_CACHE.clear()
    cold = score(golden / "grid", golden / "gt", jobs=2, cache_dir=tmp_path)
    GT_CACHE.clear()  # a new process
    warm = score(golden / "grid", golden / "gt", jobs=2, cache_dir=tmp_path)
    assert warm.work["maps_rendered"] == 0 and not warm.work["pool"]
    assert warm.work["estimated_seconds"] < cold.work["estimated_seconds"] / 4
    for k in KEYS:
        assert json.dumps(warm[k]) == json.dumps(cold[k])


def test_recipe_scoring_in_a_cache_block_keeps_rows_for_the_next_process(tables, tmp_path, count_renders):
    """calib run / calib portfolio score inside scoring_cache(stage cache): every chain's scoring
    (official_scorer) and labelling (best_ious) reads and fills the same rows, on disk."""
    from calib.recipe.schema import Scoring
    from calib.recipe.scoring import official_scorer, scoring_cache
    from calib.score import best_ious

    det, truth = tables
    det = det.filter(pl.col("system") == "dense")
    GT_CACHE.clear()
    with scoring_cache(tmp_path):
        first = official_scorer(det, truth, Scoring())
    assert len(list((tmp_path / "score" / "pred").glob("*.npz"))) == truth.get_column("clip").n_unique()
    GT_CACHE.clear()
    count_renders.clear()
    with scoring_cache(tmp_path):
        again = official_scorer(det.filter(pl.col("score") > 0.4), truth, Scoring())
        labels = best_ious(det, truth)
    assert count_renders == []
    assert again["macro_mAP"] != first["macro_mAP"]
    np.testing.assert_array_equal(labels, first.matches.sort("clip", "det_id").get_column("best_iou").to_numpy()
                                  [np.argsort(np.lexsort((det.get_column("det_id"), det.get_column("clip"))))])


def test_score_clip_fast_gives_the_reference_records_and_refuses_unrendered_gt(golden):
    from calib.score import load_dir
    from calib.score.fast import render_gt_maps, score_clip_fast
    from calib.score.reference import score_clip_reference

    preds, gts = load_dir(golden / "grid", "pred"), load_dir(golden / "gt", "gt")
    clip = sorted(gts)[0]
    P, G = [a for a in preds[clip] if a.frame < 10], [a for a in gts[clip] if a.frame < 10]
    want = score_clip_reference(clip, P, G).arrays()
    got, entry = score_clip_fast(clip, P, render_gt_maps(G))
    again, same_entry = score_clip_fast(clip, P[::2], render_gt_maps(G), entry)  # a subset: all known
    assert same_entry is entry
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
        np.testing.assert_array_equal(again[k], score_clip_reference(clip, P[::2], G).arrays()[k])
    with pytest.raises(ValueError, match="not rendered"):
        score_clip_fast(clip, P, render_gt_maps(G, np.zeros(len(G), dtype=bool)))


def test_a_table_clip_hashes_and_travels_as_its_own_rows(tables):
    import pickle

    from calib.score.columns import clips_from_table

    _, truth = tables
    clips = clips_from_table(truth.sample(fraction=1.0, shuffle=True, seed=1), "gt")  # sorted back by clip, ann_id
    assert list(clips) == sorted(clips)
    for name, tc in clips.items():
        cols = tc.columns()
        assert tc.digest() == cols.digest() == ClipAnnotations.from_annotations(cols.to_annotations()).digest()
        assert cols.index.tolist() == sorted(truth.filter(pl.col("clip") == name).get_column("ann_id").to_list())
        back = pickle.loads(pickle.dumps(tc))
        assert back._flat is None and back.digest() == tc.digest() and len(back) == len(tc)
    moved = truth.with_columns(pl.when(pl.col("ann_id") == 2).then(pl.col("frame") + 1).otherwise(pl.col("frame"))
                               .alias("frame"))
    changed = clips_from_table(moved, "gt")
    assert [changed[c].digest() != clips[c].digest() for c in clips] == [True] * len(clips)
