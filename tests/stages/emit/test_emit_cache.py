"""The emitted-detections cache: content hashes, emitted once, memory bound, disk."""
import os
import stat

import numpy as np
import polars as pl
import pytest

from calib.canvas.points import flatten, from_polygons, row_hashes
from calib.stages.base import Tables, make_stage
from calib.stages.emit.cache import EmitCache, EmitCacheError, emit_cache, emitter_key, stored_in
from calib.stages.emit.common import emit_cached
from calib.stages.emit.grid import grid_batch


def P(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


A = P([10, 30, 1], [20, 30, 1], [10, 50, 1], [20, 50, 1], [15, 40, 3])
B = P([100, 10, 0.5], [104, 10, 4], [100, 14, 0.5])
C = P([350, 80, 1], [10, 80, 1], [350, 100, 1], [10, 100, 1], [0, 90, 2])


# ---------------------------------------------------------------- hashes
def test_row_hashes_depend_on_the_points_their_order_and_polygons_only():
    fp = from_polygons([[A], [B], [A], [A[:2], A[2:]], [A[::-1]], [], [B.copy()]])
    h = row_hashes(fp)
    assert h.shape == (7, 2) and h.dtype == np.uint64
    assert (h[0] == h[2]).all() and (h[1] == h[6]).all()  # same points, same hash
    distinct = [tuple(r) for r in h[[0, 1, 3, 4, 5]]]
    assert len(set(distinct)) == 5  # split differently, reversed, empty: all different
    moved = A.copy()
    moved[4, 2] = np.nextafter(3.0, 4.0)  # one bit of one intensity
    assert tuple(row_hashes(from_polygons([[moved]]))[0]) != tuple(h[0])
    # a detection's hash does not depend on its neighbours or on runs of the computation
    sub = fp.take(np.array([4, 1]))
    assert (row_hashes(sub) == h[[4, 1]]).all()
    assert (row_hashes(fp, chunk_points=3) == h).all()
    # the extra value (what an emitter reads of the score) is part of the key
    e = row_hashes(fp, np.array([4.0, 4, 5, 4, 4, 4, 4]))
    assert (e[0] != e[2]).any() and (e[0] != h[0]).any()


# ---------------------------------------------------------------- emitted once
@pytest.fixture
def table(dets):
    rows = [{"polys": [A], "score": 0.9}, {"polys": [B], "score": 0.2, "frame": 1},
            {"polys": [C], "score": 0.6, "frame": 2}, {"polys": [A], "score": 0.3, "frame": 3, "det_id": 7},
            {"polys": [], "frame": 4}]
    return dets(rows)


def _emit(spec, df):
    return make_stage(spec).apply(Tables(detections=df))["detections"]


@pytest.mark.parametrize("spec", [{"type": "grid"}, {"type": "dense"}, {"type": "hull"},
                                  {"type": "compress", "cell": 2, "cell_high": 2}, {"type": "gaussian"}])
def test_a_subset_and_a_rescored_copy_emit_nothing_new(table, spec):
    cache = emit_cache()
    cache.clear()
    full = _emit(spec, table)
    # the table has 4 detections with points, two of them the same: 3 emitted
    assert cache.stats.emitted == 3 and cache.stats.served == 0
    subset = table.filter(pl.col("frame").is_in([1, 3]))
    rescored = table.with_columns(pl.col("score") * 0.5 + 0.01)
    out_sub = _emit(spec, subset)
    out_res = _emit(spec, rescored)
    assert cache.stats.emitted == 3  # nothing rendered again
    assert cache.stats.served == 2 + 3  # distinct detections answered from the cache
    assert out_sub.get_column("points").to_list() == full.filter(pl.col("frame").is_in([1, 3])).get_column(
        "points").to_list()
    assert out_res.get_column("points").to_list() == full.get_column("points").to_list()
    # the same as emitting without the cache
    cache.clear()
    fresh = _emit(spec, table)
    assert fresh.get_column("points").to_list() == full.get_column("points").to_list()


def test_compress_reemits_only_detections_whose_cell_size_changes(table):
    cache = emit_cache()
    cache.clear()
    spec = {"type": "compress", "cell": 3, "cell_high": 2, "high_score": 0.5}
    _emit(spec, table)
    assert cache.stats.emitted == 4  # the two copies of A have scores on either side of 0.5
    # scores moved within their side of high_score: nothing new; across it: those rows only
    _emit(spec, table.with_columns(pl.when(pl.col("score") >= 0.5).then(0.99).otherwise(0.01).alias("score")))
    assert cache.stats.emitted == 4
    flipped = _emit(spec, table.with_columns((1.0 - pl.col("score")).alias("score")))
    assert cache.stats.emitted == 4 + 2  # B and C change sides; the two copies of A swap theirs (both known)
    cache.clear()
    assert flipped.equals(_emit(spec, table.with_columns((1.0 - pl.col("score")).alias("score"))))


def test_emitter_keys_differ_by_type_and_parameters():
    assert emitter_key("grid", {"n": 3}) == emitter_key("grid", {"n": 3})
    assert len({emitter_key("grid", {"n": 3}), emitter_key("grid", {"n": 5}), emitter_key("dense", {"n": 3})}) == 3


# ---------------------------------------------------------------- memory bound
def test_least_recently_used_blocks_go_first_and_answers_stay_right():
    fp = from_polygons([[A], [B], [C]])
    emit = lambda f, s: grid_batch(f)  # noqa: E731
    expected = emit_cached(fp, np.zeros(3), emit, "g", cache=EmitCache(max_bytes=0))
    small = EmitCache(max_bytes=700)  # about two of these blocks
    for i in range(3):
        emit_cached(fp.take([i]), np.zeros(1), emit, "g", cache=small)
    assert 0 < small.nbytes <= 700 and small.stats.emitted == 3
    out = emit_cached(fp, np.zeros(3), emit, "g", cache=small)
    assert small.stats.emitted == 4  # the first block (least recently used) was dropped
    assert [p.polygons(i)[0].tolist() for p in out for i in range(p.n)] == \
        [p.polygons(i)[0].tolist() for p in expected for i in range(p.n)]


# ---------------------------------------------------------------- disk
def test_disk_copies_serve_a_fresh_process_and_bad_files_are_named(tmp_path):
    fp = from_polygons([[A], [B], [C]])
    emit = lambda f, s: grid_batch(f)  # noqa: E731
    first = EmitCache()
    with stored_in(tmp_path / "emitted"):
        out1 = emit_cached(fp, np.zeros(3), emit, "g", cache=first)
    files = list((tmp_path / "emitted" / "g").glob("*.parquet"))
    assert len(files) == 1 and not os.stat(files[0]).st_mode & stat.S_IWOTH
    assert not os.stat(tmp_path / "emitted").st_mode & stat.S_IWOTH
    assert not list((tmp_path / "emitted" / "g").glob(".*"))  # no temporary file left
    second = EmitCache()  # as in another process: memory empty
    with stored_in(tmp_path / "emitted"):
        out2 = emit_cached(fp, np.zeros(3), emit, "g", cache=second)
    assert second.stats.emitted == 0 and second.stats.read_from_disk == 3
    assert [p.xye.tolist() for p in out1] == [p.xye.tolist() for p in out2]
    files[0].write_bytes(b"not parquet")
    with stored_in(tmp_path / "emitted"), pytest.raises(EmitCacheError, match=str(files[0])):
        emit_cached(fp, np.zeros(3), emit, "g", cache=EmitCache())
    # without the disk nothing is read
    third = EmitCache()
    emit_cached(fp, np.zeros(3), emit, "g", cache=third)
    assert third.stats.emitted == 3


def test_the_stage_output_keeps_rows_whose_emitter_gives_nothing(table):
    emit_cache().clear()
    out = _emit({"type": "grid"}, table)
    assert flatten(out.get_column("points")).polygons(4) == []
    assert out.drop("points").equals(table.drop("points"))


# ---------------------------------------------------------------- recipes
def test_chains_over_the_same_detections_emit_each_once_via_the_stage_cache(tmp_path):
    """Two variants that only rescore the detections: the second one's emitter renders nothing,
    even in a fresh process (its memory empty), reading what the first stored beside the stage
    cache."""
    from calib.recipe import Recipe, clip_sets, run_chain
    from calib.recipe.cache import StageCache
    from calib.recipe.inputs import load_inputs
    from tests.recipe.toys import recipe_dict, toy_stages, write_data

    data = write_data(tmp_path / "data")
    cache = StageCache(tmp_path / "cache")
    outs = []
    with toy_stages():
        for delta in (0.25, 0.5):
            emit_cache().clear()  # as if each variant ran in its own process
            recipe = Recipe.from_dict(recipe_dict(stages=[{"type": "t_add", "delta": delta}], emit={"type": "grid"}))
            loaded = load_inputs(recipe, data, cache_dir=cache.root)
            fit, _ = clip_sets(recipe, loaded.tables)
            res = run_chain(recipe, loaded.tables, loaded.key, fit_clips=fit, cache=cache)
            outs.append((res.tables["detections"], emit_cache().stats))
    (first, s1), (second, s2) = outs
    distinct = len(np.unique(row_hashes(flatten(first.get_column("points"))), axis=0))
    assert distinct == 3 and len(first) == 6  # the toy systems repeat shapes
    assert s1.emitted == 3 and s1.read_from_disk == 0
    assert s2.emitted == 0 and s2.read_from_disk == 3
    assert first.get_column("points").to_list() == second.get_column("points").to_list()
    assert list((tmp_path / "cache" / "emitted").iterdir())


def test_a_cache_file_with_foreign_points_is_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    fp = from_polygons([[A]])
    emit = lambda f, s: grid_batch(f)  # noqa: E731
    with stored_in(tmp_path):
        emit_cached(fp, np.zeros(1), emit, "g", cache=EmitCache())
    (path,) = (tmp_path / "g").glob("*.parquet")
    t = pq.read_table(path)
    pq.write_table(t.set_column(3, "points", pa.array(["not points"])), path)
    with stored_in(tmp_path), pytest.raises(EmitCacheError, match="cannot read"):
        emit_cached(fp, np.zeros(1), emit, "g", cache=EmitCache())


@pytest.mark.parametrize("spec", [{"type": "grid"}, {"type": "dense"}, {"type": "hull"},
                                  {"type": "compress", "cell": 2, "cell_high": 2}])
def test_a_big_table_is_emitted_a_block_of_rows_at_a_time_with_the_same_points(table, spec, monkeypatch, tmp_path):
    import calib.stages.emit.common as common

    big = pl.concat([table] * 3).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("det_id"))
    with stored_in(tmp_path / "whole"):
        whole = _emit(spec, big)
    monkeypatch.setattr(common, "REWRITE_ROWS", 4)  # 15 rows: blocks of 4, 4, 4, 3
    with stored_in(tmp_path / "blocks"):
        blocks = _emit(spec, big)
    assert blocks.equals(whole)
    assert blocks.get_column("points").n_chunks() >= 4  # each block's output kept, not copied into one
    assert whole.get_column("points").to_list() != big.get_column("points").to_list()  # it did emit


def test_threads_sharing_the_cache_get_the_right_points(monkeypatch):
    """Chains on threads (calib.score.parallel.thread_map) emit through one cache at once, with
    blocks evicted under them: every answer is still the emitter's own (an index is built slowly
    here, so another thread changes the blocks meanwhile unless locked out)."""
    import time

    from calib.stages.emit import cache as emit_cache_module
    from tests.threads import errors_on_threads

    polys = [[A], [B], [C], [A[:4]], [B[::-1]], [C[1:]]]
    fp = from_polygons(polys)
    emit = lambda f, s: grid_batch(f)  # noqa: E731
    expected = [p.polygons(i)[0].tolist() for p in emit_cached(fp, np.zeros(6), emit, "g", cache=EmitCache(max_bytes=0))
                for i in range(p.n)]
    build = emit_cache_module._build_index

    def slow_build(blocks):
        index = build(blocks)
        time.sleep(1e-3)
        return index

    monkeypatch.setattr(emit_cache_module, "_build_index", slow_build)
    shared = EmitCache(max_bytes=900)

    def hammer(t):
        rng = np.random.default_rng(t)
        for _ in range(40):
            rows = rng.permutation(6)[: rng.integers(1, 7)]
            out = emit_cached(fp.take(rows), np.zeros(rows.size), emit, "g", cache=shared)
            got = [p.polygons(i)[0].tolist() for p in out for i in range(p.n)]
            assert got == [expected[r] for r in rows]

    assert errors_on_threads(hammer) == []
    assert 0 < shared.nbytes <= 900
