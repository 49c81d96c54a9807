"""Energy maps in boxes -> canvas points: hand-computed cell centres, seam wrap, scaling, grid pooling."""
import numpy as np
import polars as pl
import pytest

from calib.adapters.points import adaptive_mean, map_points
from calib.tables import POLYGONS


def as_lists(arr) -> list:
    return [[[(p["x"], p["y"], p["e"]) for p in poly] for poly in ann] for ann in pl.Series(arr).to_list()]


def test_dense_keeps_cells_at_or_above_the_relative_threshold():
    # box 4 x 4 px, 2 x 2 map: cell centres at x = 10 + 1, 10 + 3 and y = 20 + 1, 20 + 3
    maps = np.array([[[1.0, 0.05], [0.5, 0.0]]])
    got = as_lists(map_points([[10, 20, 14, 24]], maps, mode="dense", min_rel_energy=0.1))
    assert got == [[[(11.0, 21.0, 1.0), (11.0, 23.0, 0.5)]]]
    everything = as_lists(map_points([[10, 20, 14, 24]], maps, mode="dense", min_rel_energy=0.0))
    assert everything == [[[(11.0, 21.0, 1.0), (13.0, 21.0, 0.05), (11.0, 23.0, 0.5)]]]  # zero cells never kept


def test_full_28x28_map_covers_the_box_at_cell_centres():
    got = as_lists(map_points([[0, 0, 28, 28]], np.ones((1, 28, 28)), mode="dense"))[0][0]
    assert len(got) == 784
    assert got[0] == (0.5, 0.5, 1.0) and got[27] == (27.5, 0.5, 1.0) and got[-1] == (27.5, 27.5, 1.0)


@pytest.mark.parametrize("box, xs", [([350, 0, 370, 10], [355.0, 5.0]), ([-10, 0, 10, 10], [355.0, 5.0]),
                                     ([340, 0, 360, 10], [345.0, 355.0])])
def test_boxes_over_the_seam_wrap_into_one_polygon(box, xs):
    got = as_lists(map_points([box], np.ones((1, 1, 2)), mode="dense"))
    assert got == [[[(xs[0], 5.0, 1.0), (xs[1], 5.0, 1.0)]]]


def test_model_canvas_is_scaled_and_y_clamped():
    # a 100 x 50 model canvas: 3.6 canvas degrees per model pixel both ways
    got = as_lists(map_points([[0, 0, 10, 10]], np.ones((1, 1, 1)), box_scale=(3.6, 3.6)))
    assert got == [[[(18.0, 18.0, 1.0)]]]
    got = as_lists(map_points([[0, 170, 10, 200]], np.ones((1, 2, 1))))
    assert got == [[[(5.0, 177.5, 1.0), (5.0, 180.0, 1.0)]]]


def test_degenerate_box_collapses_to_its_corner():
    got = as_lists(map_points([[30, 40, 20, 40]], np.ones((1, 2, 2)) * 0.5))
    assert got == [[[(30.0, 40.0, 0.5)] * 4]]


def test_grid_points_carry_block_means():
    maps = np.arange(16, dtype=float).reshape(1, 4, 4)
    got = as_lists(map_points([[0, 0, 8, 8]], maps, mode="grid", grid=2))
    assert got == [[[(2.0, 2.0, 2.5), (6.0, 2.0, 4.5), (2.0, 6.0, 10.5), (6.0, 6.0, 12.5)]]]


def test_adaptive_mean_matches_block_loops():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 28, 28))
    np.testing.assert_allclose(adaptive_mean(maps, 7), maps.reshape(3, 7, 4, 7, 4).mean(axis=(2, 4)), rtol=1e-12)
    k = 3  # overlapping bins [floor(i*28/3), ceil((i+1)*28/3))
    want = np.empty((3, k, k))
    for i in range(k):
        for j in range(k):
            r0, r1 = (i * 28) // k, -(-((i + 1) * 28) // k)
            c0, c1 = (j * 28) // k, -(-((j + 1) * 28) // k)
            want[:, i, j] = maps[:, r0:r1, c0:c1].mean(axis=(1, 2))
    np.testing.assert_allclose(adaptive_mean(maps, k), want, rtol=1e-12)


def test_many_detections_and_none():
    rng = np.random.default_rng(1)
    boxes = np.c_[rng.uniform(-20, 340, 5), rng.uniform(0, 150, 5)]
    boxes = np.c_[boxes, boxes + rng.uniform(5, 40, (5, 2))]
    arr = map_points(boxes, rng.random((5, 28, 28)), mode="dense", min_rel_energy=0.5)
    s = pl.Series("points", arr)
    assert s.dtype == POLYGONS and len(s) == 5
    pts = s.explode().explode().struct.unnest()
    assert pts["x"].is_between(0, 360).all() and pts["y"].is_between(0, 180).all()
    assert len(map_points(np.zeros((0, 4)), np.zeros((0, 28, 28)))) == 0


def test_bad_mode_and_shapes():
    with pytest.raises(ValueError, match="dense"):
        map_points([[0, 0, 1, 1]], np.ones((1, 2, 2)), mode="sparse")
    with pytest.raises(ValueError, match="N = 2"):
        map_points([[0, 0, 1, 1], [0, 0, 1, 1]], np.ones((1, 2, 2)))
