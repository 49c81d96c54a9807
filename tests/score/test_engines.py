"""The fast engine's machinery gives the reference's numbers: caches, folders, parallel backends."""
from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from calib.score import load_dir, score
from calib.score.cache import GT_CACHE

KEYS = ("macro_mAP", "micro_mAP", "macro_AP_per_thr", "micro_AP_per_thr", "macro_pearson_r", "micro_pearson_r",
        "micro_pearson_n")


def first_frames(anns: dict, n: int) -> dict:
    """The annotations of the first n frames, renumbered as the file holding only them would be."""
    from dataclasses import replace

    return {c: [replace(a, index=i) for i, a in enumerate(x for x in v if x.frame < n)] for c, v in anns.items()}


@pytest.fixture(scope="module")
def small(golden):
    """Golden grid predictions and GT cut to their first 12 frames (fast to score both ways)."""
    return first_frames(load_dir(golden / "grid", "pred"), 12), first_frames(load_dir(golden / "gt", "gt"), 12)


def write_folder(anns: dict, folder, suffix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for clip, v in anns.items():
        doc = {"annotations": [{"metadata_frame_index": a.frame, "category_id": a.class_id,
                                "segmentation": [p.tolist() for p in a.polygons]}
                               | ({} if np.isnan(a.score) else {"score": a.score}) for a in v]}
        (folder / f"{clip}{suffix}").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def small_dirs(small, tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    write_folder(small[0], root / "pred", ".json")
    write_folder(small[1], root / "gt", "_std.json")
    return root / "pred", root / "gt"


def same_metrics(a, b) -> None:
    for k in KEYS:
        assert json.dumps(a[k]) == json.dumps(b[k]), k  # NaN-safe exact equality


def test_fast_equals_reference_on_every_record(small):
    pred, gt = small
    fast = score(pred, gt, iou_thresholds=[0.1, 0.3, 0.5])
    ref = score(pred, gt, iou_thresholds=[0.1, 0.3, 0.5], engine="reference")
    same_metrics(fast, ref)
    assert fast.matches.equals(ref.matches)
    assert fast.gt_matches.equals(ref.gt_matches)


def test_folders_and_mappings_agree(small, small_dirs):
    by_folder = score(*small_dirs)
    by_map = score(*small)
    same_metrics(by_folder, by_map)
    assert by_folder.matches.equals(by_map.matches)


def test_gt_maps_come_from_the_disk_cache_and_a_changed_file_is_rendered_again(small_dirs, tmp_path, monkeypatch):
    import calib.score.fast as fast

    pred_dir, gt_dir = small_dirs[0], tmp_path / "gt"
    shutil.copytree(small_dirs[1], gt_dir)
    cache = tmp_path / "cache"
    first = score(pred_dir, gt_dir, cache_dir=cache)
    entries = sorted(p.name for p in cache.glob("*.npz"))
    assert len(entries) == 3  # one per GT file
    GT_CACHE.clear()

    def no_rendering(*_):
        raise AssertionError("GT rendered although cached")

    monkeypatch.setattr(fast, "render_gt_maps", no_rendering)
    same_metrics(score(pred_dir, gt_dir, cache_dir=cache), first)  # memory empty: read from disk
    # change one GT file: its key changes, so it must be rendered (and the patched renderer refuses)
    f = gt_dir / "fold5_room8_mix002_std.json"
    doc = json.loads(f.read_text())
    doc["annotations"] = doc["annotations"][:-1]
    f.write_text(json.dumps(doc))
    with pytest.raises(AssertionError, match="GT rendered although cached"):
        score(pred_dir, gt_dir, cache_dir=cache)


@pytest.mark.parametrize("protocol", ["dcase2026", "dcase2026-coco"])
def test_a_cached_score_leaves_every_gt_digest_in_the_folder_index(small_dirs, tmp_path, protocol):
    """Both engines' entry points save the digests they learned (one write after hashing)."""
    import os
    import time

    from calib.score.cache import DIGEST_INDEX

    gt_dir, cache = tmp_path / "gt", tmp_path / "cache"
    shutil.copytree(small_dirs[1], gt_dir)
    old = time.time_ns() - 10_000_000_000  # older than the racy window: digests may be kept
    for f in gt_dir.iterdir():
        os.utime(f, ns=(old, old))
    GT_CACHE.clear()
    score(small_dirs[0], gt_dir, protocol=protocol, cache_dir=cache)
    index = json.loads((cache / DIGEST_INDEX).read_text())["files"]
    assert sorted(index) == sorted(os.path.abspath(f) for f in gt_dir.iterdir())


def test_memory_cache_serves_repeated_mapping_scores(small, monkeypatch):
    import calib.score.fast as fast

    pred, gt = small
    first = score(pred, gt)
    monkeypatch.setattr(fast, "render_gt_maps", lambda *_: (_ for _ in ()).throw(AssertionError("re-rendered")))
    same_metrics(score(pred, gt), first)


def test_gt_rows_are_rendered_on_demand_and_a_second_system_adds_the_rows_it_needs(small, tmp_path):
    from calib.score.api import annotations_digest
    from calib.score.cache import entry_key
    from calib.score.fast import GTMaps

    pred, gt = small
    half = {c: [a for a in v if a.class_id in (0, 5, 7)] for c, v in pred.items()}  # fewer buckets
    GT_CACHE.clear()
    score(half, gt, cache_dir=tmp_path)
    GT_CACHE.clear()  # read back from disk
    maps = {c: GT_CACHE.get(entry_key("dcase2026", annotations_digest(v)), tmp_path, GTMaps) for c, v in gt.items()}
    done = np.concatenate([m.done for m in maps.values()])
    cls = np.concatenate([m.cls for m in maps.values()])
    assert done.any() and not done.all()
    assert set(cls[done].tolist()) <= {0, 5, 7}  # only GT of buckets holding a prediction
    warm = score(pred, gt, cache_dir=tmp_path)  # needs more rows than the cache holds
    GT_CACHE.clear()
    cold = score(pred, gt, engine="reference")
    same_metrics(warm, cold)
    assert warm.matches.equals(cold.matches)
    GT_CACHE.clear()
    grown = {c: GT_CACHE.get(entry_key("dcase2026", annotations_digest(v)), tmp_path, GTMaps) for c, v in gt.items()}
    assert sum(int(m.done.sum()) for m in grown.values()) > int(done.sum())


def test_small_render_chunks_and_pair_blocks_give_the_reference_records(small, monkeypatch):
    """The fast engine renders predictions a chunk of buckets at a time and takes one-to-one IoUs
    in blocks: boundaries anywhere leave every record as the reference's."""
    from calib.score import fast

    pred, gt = small
    ref = score(pred, gt, engine="reference")
    for chunk, block in ((1, 1), (3, 2), (7, 5)):
        monkeypatch.setattr(fast, "_RENDER_CHUNK", chunk)
        monkeypatch.setattr(fast, "_PAIR_BLOCK", block)
        GT_CACHE.clear()
        got = score(pred, gt)
        same_metrics(got, ref)
        assert got.matches.equals(ref.matches)
        assert got.gt_matches.equals(ref.gt_matches)


def test_meets_gt_is_the_per_bucket_box_test():
    from calib.score.fast import meets_gt

    rng = np.random.default_rng(3)
    pkey, gkey = rng.integers(0, 6, 300), rng.integers(0, 6, 80)
    lo = rng.integers(0, 40, (380, 2))
    boxes = np.column_stack([lo[:, 0], lo[:, 0] + rng.integers(-1, 8, 380), lo[:, 1], lo[:, 1] + rng.integers(-1, 8, 380)])
    pbox, gbox = boxes[:300], boxes[300:]
    want = [any(not (g[1] < p[0] or g[0] > p[1] or g[3] < p[2] or g[2] > p[3]) for g in gbox[gkey == k])
            for p, k in zip(pbox, pkey)]
    assert meets_gt(pkey, pbox, gkey, gbox).tolist() == want
    assert not meets_gt(pkey, pbox, gkey[:0], gbox[:0]).any()


def test_gt_maps_dense_rows():
    from calib.score.cache import pack_sparse
    from calib.score.gt_maps import NPIX, GTMaps

    rng = np.random.default_rng(4)
    flats = [np.where(rng.random(NPIX) < p, rng.random(NPIX), 0.0) for p in (0.01, 0.0, 0.2, 0.05)]
    off, pix, vals = pack_sparse(flats, np.float64)
    z = np.zeros(4, dtype=np.int64)
    maps = GTMaps(frame=z, cls=z, index=z, distance=z.astype(float), is32=z.astype(bool), done=~z.astype(bool),
                  off=off, pix=pix, vals=vals)
    np.testing.assert_array_equal(maps.dense([2, 0, 1, 2]), np.stack([flats[2], flats[0], flats[1], flats[2]]))
    assert maps.dense([]).shape == (0, NPIX)


@pytest.fixture
def always_pool(monkeypatch):
    """A pool even for these small jobs (below calib.score.parallel.POOL_MIN_SECONDS none is started)."""
    from calib.score import parallel

    monkeypatch.setattr(parallel, "POOL_MIN_SECONDS", 0.0)


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_parallel_backends_give_identical_results(small, backend, always_pool):
    pred, gt = small
    GT_CACHE.clear()
    one = score(pred, gt)
    GT_CACHE.clear()
    two = score(pred, gt, jobs=2, backend=backend)
    assert two.work["pool"] and not one.work["pool"]
    same_metrics(one, two)
    assert one.matches.equals(two.matches)


def test_dask_cluster_gives_identical_results(small, always_pool):
    distributed = pytest.importorskip("distributed")
    pred, gt = small
    one = score(pred, gt)
    GT_CACHE.clear()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        got = score(pred, gt, backend="dask", scheduler=cluster.scheduler_address)
    assert got.work["pool"]
    same_metrics(one, got)
    assert one.matches.equals(got.matches)


def test_match_table_columns_and_labels(small):
    pred, gt = small
    res = score(pred, gt, iou_thresholds="0.25,0.5")
    m = res.matches
    assert m.columns[:10] == ["system", "clip", "frame", "det_id", "class_id", "score", "gt_ann_id", "iou",
                              "best_iou", "pearson"]
    assert {"tp_0.25", "tp_0.5"} <= set(m.columns)
    assert m.height == sum(len(v) for v in pred.values())
    iou32 = m.get_column("iou").cast(pl.Float32)
    assert (m.get_column("tp_0.25") == (m.get_column("gt_ann_id").is_not_null() & (iou32 >= 0.25))).all()
    assert m.filter(pl.col("gt_ann_id").is_null()).get_column("iou").max() in (None, 0.0)
    assert (m.get_column("iou") <= m.get_column("best_iou")).all()
    assert res.gt_matches.height == sum(len(v) for v in gt.values())
    # the per-class true positives the AP used are the table's
    tp = m.group_by("class_id").agg(pl.col("tp_0.5").sum()).sort("class_id")
    assert int(tp.get_column("tp_0.5").sum()) == int(np.count_nonzero(m.get_column("tp_0.5").to_numpy()))


def test_reference_engine_refuses_parallel_runs(small):
    pred, gt = small
    with pytest.raises(ValueError, match="reference engine"):
        score(pred, gt, engine="reference", jobs=2)


def _blob(x0: float, y0: float, n: int = 6) -> tuple[np.ndarray, ...]:
    """A lattice blob of n x n points from (x0, y0), peaking in its middle (degrees)."""
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    e = 1.0 - (np.abs(xs - n / 2) + np.abs(ys - n / 2)) / n
    return (np.column_stack([xs.ravel() + x0, ys.ravel() + y0, e.ravel()]),)


def test_a_gt_no_prediction_box_meets_is_not_rendered_until_one_does(tmp_path):
    """Frame 0, class 0 holds two GT blobs 200 degrees apart; the first system predicts only near
    the first: the second's map is left unrendered (its IoUs are 0 and its Pearson NaN anyway), and
    the metrics and records are the reference's. A second system predicting near the second GT gets
    it rendered then, again with the reference's numbers."""
    from calib.score.annotations import Annotation
    from calib.score.api import annotations_digest
    from calib.score.cache import entry_key
    from calib.score.fast import GTMaps

    gt = {"c": [Annotation(0, 0, float("nan"), _blob(40, 80), index=0),
                Annotation(0, 0, float("nan"), _blob(240, 80), index=1)]}
    near_first = {"c": [Annotation(0, 0, 0.9, _blob(41, 81, 4), index=0)]}
    near_both = {"c": [Annotation(0, 0, 0.9, _blob(41, 81, 4), index=0),
                       Annotation(0, 0, 0.8, _blob(242, 79, 4), index=1)]}
    key = entry_key("dcase2026", annotations_digest(gt["c"]))
    for pred, rendered in ((near_first, [True, False]), (near_both, [True, True])):
        GT_CACHE.clear()
        got = score(pred, gt, cache_dir=tmp_path)
        GT_CACHE.clear()
        assert GT_CACHE.get(key, tmp_path, GTMaps).done.tolist() == rendered
        ref = score(pred, gt, engine="reference")
        same_metrics(got, ref)
        assert got.matches.equals(ref.matches) and got.gt_matches.equals(ref.gt_matches)
    assert ref["micro_mAP"] > 0.3  # both predictions match their GT


def test_prepare_gt_renders_what_scoring_the_detections_needs(synth_small, tmp_path, monkeypatch):
    """prepare_gt with the detections to be scored renders the maps scoring them needs and no more
    (some GT stays unrendered: no prediction box meets it); scoring afterwards renders no GT and
    gives the reference's numbers."""
    from calib.io.dcase import ingest_predictions, ingest_truth
    from calib.score import fast
    from calib.score.api import prepare_gt, score_tables
    from calib.score.cache import entry_key
    from calib.score.columns import clips_from_table
    from calib.score.fast import GTMaps

    truth, _ = ingest_truth(synth_small / "gt")
    det, _ = ingest_predictions([synth_small / "systems" / "sparse"])
    GT_CACHE.clear()
    assert prepare_gt(truth, [det], cache_dir=tmp_path) > 0
    GT_CACHE.clear()
    done = [GT_CACHE.get(entry_key("dcase2026", t.digest()), tmp_path, GTMaps).done
            for t in clips_from_table(truth, "gt").values()]
    assert any(d.any() for d in done) and not all(d.all() for d in done)
    monkeypatch.setattr(fast, "render_gt_maps", lambda *_: (_ for _ in ()).throw(AssertionError("GT rendered again")))
    got = score_tables(det, truth, cache_dir=tmp_path)
    from calib.score import api

    monkeypatch.setattr(api, "_gt_job", lambda *_: (_ for _ in ()).throw(AssertionError("a clip job sent")))
    assert prepare_gt(truth, [det], cache_dir=tmp_path) == 0  # nothing left to render: no job at all
    monkeypatch.undo()
    GT_CACHE.clear()
    same_metrics(got, score_tables(det, truth, engine="reference"))
