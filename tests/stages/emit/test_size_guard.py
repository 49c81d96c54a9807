"""Size guard: exact sizes, the coarsening order, and no exported file over 20 MiB."""
import numpy as np
import polars as pl
import pytest

from calib.stages.emit.guard import (STEPS, annotation_sizes, export_guarded, file_bytes, guard_sizes,
                               size_upper_bound)
from calib.constants import MAX_FILE_BYTES
from calib.io.dcase import dumps_clip
from calib.canvas.points import flatten
from calib.stages.base import Tables, make_stage


def block(x0, y0, w, h, rng):
    xs, ys = np.meshgrid(np.arange(x0, x0 + w), np.arange(y0, y0 + h))
    e = np.round(rng.uniform(0.1, 1.0, xs.size), 6)
    return np.column_stack([xs.ravel() % 360, ys.ravel(), e]).astype(float)


def test_sizes_are_exact(dets):
    rng = np.random.default_rng(1)
    df = dets([{"polys": [block(10 * i, 20, 3 + i, 4, rng)], "score": 0.1 * i} for i in range(5)]
              + [{"polys": []}])
    sizes = annotation_sizes(df)
    assert file_bytes(sizes) == len(dumps_clip(df, "pred"))
    assert file_bytes(sizes[:0]) == len(dumps_clip(df.clear(), "pred"))


def test_clip_within_the_limit_is_untouched(dets):
    rng = np.random.default_rng(2)
    df = dets([{"polys": [block(10, 20, 5, 5, rng)]}])
    res = guard_sizes(df)
    assert res.table.equals(df) and len(res.report) == 0


def test_steps_run_in_order_on_the_biggest_detections_only(dets):
    rng = np.random.default_rng(3)
    big = block(100, 50, 30, 30, rng)
    big[:, :2] += 0.123456789  # long coordinates: 'round' alone shrinks it
    df = dets([{"polys": [big], "score": 0.9}, {"polys": [block(10, 10, 3, 3, rng)], "score": 0.1}])
    sizes = annotation_sizes(df)
    # Room for everything once the big detection is rounded: only 'round' runs, only on it.
    res = guard_sizes(df, max_bytes=file_bytes(sizes) - sizes[0] // 3, batch=1)
    assert res.report.get_column("step").to_list() == ["round"]
    assert res.report.row(0, named=True)["detections"] == 1
    assert res.table[1].equals(df[1])
    assert file_bytes(annotation_sizes(res.table)) <= file_bytes(sizes) - sizes[0] // 3
    # Much less room: round, drop_low, compress4, ... until it fits; points only go down.
    res = guard_sizes(df, max_bytes=1500, batch=1)
    steps = res.report.get_column("step").to_list()
    assert steps == list(STEPS[: len(steps)]) and len(steps) >= 3
    assert (res.report.get_column("points_after") <= res.report.get_column("points_before")).all()
    assert file_bytes(annotation_sizes(res.table)) <= 1500


def test_drop_removes_the_lowest_scores_first(dets):
    rng = np.random.default_rng(4)
    df = dets([{"polys": [block(10 * i, 20, 4, 4, rng)], "score": s} for i, s in enumerate([0.5, 0.2, 0.9, 0.2])])
    sizes = annotation_sizes(df)
    limit = file_bytes(sizes) - sizes[3] - 1  # dropping one (the later of the two 0.2s) is enough
    res = guard_sizes(df, max_bytes=limit, steps=("drop",))
    assert res.table.get_column("det_id").to_list() == [0, 1, 2]
    res = guard_sizes(df, max_bytes=limit - 1, steps=("drop",))
    assert res.table.get_column("det_id").to_list() == [0, 2]
    with pytest.raises(ValueError, match="still"):
        guard_sizes(df, max_bytes=100, steps=("round",))
    with pytest.raises(ValueError, match="unknown step"):
        guard_sizes(df, steps=("shrink",))


def flood_block(rng, n=200):
    """n false-positive points with full-precision floats (~60 bytes each as JSON)."""
    x0, y0 = rng.uniform(0, 330), rng.uniform(0, 150)
    return np.column_stack([x0 + rng.uniform(0, 30, n), y0 + rng.uniform(0, 30, n), rng.uniform(0.01, 1, n)])


def test_flood_of_false_positives_never_exports_over_20_mib(dets, tmp_path):
    rng = np.random.default_rng(5)
    # One clip of 2,000 false positives (~23 MiB as JSON) and a small clip.
    flood = [{"clip": "flood", "det_id": i, "frame": i // 10, "class_id": i % 13, "score": float(rng.random()),
              "polys": [flood_block(rng)]} for i in range(2000)]
    small = [{"clip": "small", "det_id": 0, "polys": [block(5, 5, 4, 4, rng)]}]
    df = dets(flood + small)
    files, res = export_guarded(df, tmp_path / "sub", progress=False)
    sizes = {f.name: f.stat().st_size for f in files}
    assert set(sizes) == {"flood.json", "small.json"}
    assert max(sizes.values()) <= MAX_FILE_BYTES
    assert (tmp_path / "sub" / "small.json").read_bytes() == dumps_clip(df.filter(pl.col("clip") == "small"), "pred")
    rep = res.report
    assert rep.get_column("clip").unique().to_list() == ["flood"]
    assert rep.row(0, named=True)["bytes_before"] > MAX_FILE_BYTES  # it was a flood
    assert rep.get_column("detections").sum() > 0 and "coarsened" in res.summary()


def test_upper_bound_is_an_upper_bound(dets):
    rng = np.random.default_rng(7)
    df = dets([{"polys": [flood_block(rng, 50), block(1, 2, 3, 3, rng)], "score": float(rng.random())} for _ in range(20)])
    assert file_bytes(annotation_sizes(df)) <= size_upper_bound(df) <= 3 * file_bytes(annotation_sizes(df))


def test_size_guard_stage(dets):
    rng = np.random.default_rng(6)
    df = dets([{"polys": [block(10, 20, 30, 30, rng)]}])
    st = make_stage({"type": "size_guard", "max_mib": 0.01})
    out = st.apply(Tables(detections=df))["detections"]
    assert file_bytes(annotation_sizes(out)) <= 0.01 * 2**20
    assert len(st.report_) >= 1
    assert flatten(out.get_column("points")).count[0] < flatten(df.get_column("points")).count[0]
    empty = df.clear()
    assert make_stage({"type": "size_guard"}).apply(Tables(detections=empty))["detections"].equals(empty)
