"""dcase2026 rendering on hand-checked cases, and the fast renderer against the reference."""
from __future__ import annotations

import numpy as np
import pytest

from calib.score.annotations import Annotation
from calib.score.reference import render_reference
from calib.score.render import render_annotation, scaled_polygon


def poly(*triplets):
    return np.array(triplets, dtype=np.float64)


def test_one_point_rounds_half_to_even():
    # x = 9 and y = 63 scale (x 100/360, y 50/180, float32) to exactly 2.5 and 17.5:
    # round half to even gives column 2 and row 18.
    amap, is32 = render_annotation([poly([9.0, 63.0, 0.7])])
    expected = np.zeros((50, 100))
    expected[18, 2] = 1.0  # the only pixel, normalized to peak 1
    assert is32  # no interpolation: the official canvas stays float32
    np.testing.assert_array_equal(amap, expected)
    np.testing.assert_array_equal(render_reference([poly([9.0, 63.0, 0.7])]), expected)


def test_two_points_keep_their_max_and_normalize():
    amap, is32 = render_annotation([poly([9.0, 63.0, 0.4], [63.0, 9.0, 0.8])])
    expected = np.zeros((50, 100))
    expected[18, 2] = np.float32(0.4) / np.float32(0.8)  # float32 division, as the official
    expected[2, 18] = 1.0
    assert is32
    np.testing.assert_array_equal(amap, expected)
    # the same pixel twice: the max wins, not the sum
    amap, _ = render_annotation([poly([9.0, 63.0, 0.4], [8.8, 63.3, 0.3])])  # both at (18, 2)
    assert amap[18, 2] == 1.0 and np.count_nonzero(amap) == 1


def test_rectangle_across_the_seam_lands_on_both_edges_only():
    # x 358.2 / 1.8 scale to 99.5 / 0.5; the gap 0.5 -> 99.5 exceeds 50, so the points left of it
    # move by +100 (0.5 -> 100.5): the rectangle spans x 99.5..100.5 and covers grid column 100,
    # which folds onto column 0. y 18 / 36 scale to rows 5..10 (boundary points included).
    # Constant intensity: the interpolated value is that constant, 1 after normalization.
    rect = poly([358.2, 18.0, 0.6], [1.8, 18.0, 0.6], [1.8, 36.0, 0.6], [358.2, 36.0, 0.6])
    amap, is32 = render_annotation([rect])
    expected = np.zeros((50, 100))
    expected[5:11, 0] = 1.0
    assert not is32
    np.testing.assert_array_equal(amap, expected)
    np.testing.assert_array_equal(render_reference([rect]), expected)
    xs, _, _ = scaled_polygon(rect)
    assert xs.min() > 99 and xs.max() < 101


def test_collinear_points_fall_back_to_stamping():
    line = poly([36.0, 36.0, 0.5], [72.0, 36.0, 1.0], [108.0, 36.0, 0.25])  # one row: no triangle
    amap, is32 = render_annotation([line])
    expected = np.zeros((50, 100))
    expected[10, [10, 20, 30]] = [0.5, 1.0, 0.25]
    assert is32
    np.testing.assert_array_equal(amap, expected)


def test_empty_annotation_is_all_zero():
    amap, _ = render_annotation([])
    assert not amap.any()


@pytest.mark.parametrize("seed", range(4))
def test_fast_renderer_is_bit_identical_to_the_reference(seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        polys = []
        for _ in range(int(rng.integers(1, 3))):
            n = int(rng.choice([1, 2, 3, 5, 12, 40]))
            cx, cy = rng.uniform(0, 360), rng.uniform(0, 180)
            x = np.clip(cx + rng.normal(0, 15, n), 0, 360)
            if rng.random() < 0.3:  # integer lattices, as GT and dense systems write them
                x = np.round(x)
            y = np.clip(cy + rng.normal(0, 10, n), 0, 180)
            polys.append(np.column_stack([x, y, rng.uniform(0.1, 1.2, n)]))
        fast, _ = render_annotation(polys)
        np.testing.assert_array_equal(fast, render_reference(polys))


def test_fast_renderer_matches_the_reference_on_awkward_polygons():
    """Cases the box/fold shortcuts could get wrong: seam crossings (blocks on both halves of the
    200-wide canvas), polygons wider than half the canvas, points on the box edges and at x = 360,
    duplicates, collinear and near-collinear sets, 1-2 points, lattices (degenerate Delaunay)."""
    rng = np.random.default_rng(11)
    lat = np.array([(x, y) for x in range(350, 370) for y in range(40, 52)], dtype=float)
    cases = [
        [poly([355.0, 10, 1], [5, 12, 0.5], [358, 30, 0.7], [2, 33, 0.2])],  # seam
        [poly([10.0, 10, 1], [200, 90, 0.5], [340, 20, 0.7], [100, 170, 0.2])],  # wide, no seam move
        [poly([0.0, 0, 1], [360, 180, 0.5], [360, 0, 0.7], [0, 180, 0.2])],  # whole canvas, corners
        [poly([36.0, 36, 1], [36, 36, 1], [72, 72, 0.5], [36, 72, 0.3])],  # duplicate point
        [poly([36.0, 36, 1], [72, 72, 0.5], [108, 108.000001, 0.3])],  # near-collinear
        [poly([359.9, 90, 1], [0.1, 91, 0.5])],  # two points over the seam
        [poly([360.0, 180, 0.4])],  # one point on the far corner
        [np.column_stack([np.mod(lat[:, 0], 360), lat[:, 1], rng.random(len(lat))])],  # lattice over the seam
        [poly([18.0, 18, 1], [36, 18, 0.5], [36, 36, 0.3], [18, 36, 0.8])],  # vertices on grid points
        [poly([10.0, 10, -1], [30, 10, -0.5], [20, 30, -0.2])],  # negative intensities
    ]
    for polys in cases:
        fast, _ = render_annotation(polys)
        np.testing.assert_array_equal(fast, render_reference(polys))
        both = polys + [poly([180.0, 90, 0.9], [190, 95, 0.1], [185, 100, 0.5])]  # two polygons
        np.testing.assert_array_equal(render_annotation(both)[0], render_reference(both))


def test_prediction_boxes_hold_every_pixel_the_renderer_sets():
    """fast.pred_boxes lets the fast engine skip rendering a prediction whose box meets no GT
    pixel: each box must hold every nonzero pixel of its map (stamped points round outwards,
    lattices, canvas edges, several polygons, annotations without points)."""
    from calib.score.fast import pred_boxes

    rng = np.random.default_rng(5)
    anns = [Annotation(0, 0, 0.0, ())]
    for _ in range(400):
        polys = []
        for _ in range(int(rng.integers(1, 3))):
            n = int(rng.choice([1, 2, 3, 4, 9, 30]))
            cx, cy = rng.uniform(0, 360), rng.uniform(0, 180)
            x = np.clip(cx + rng.normal(0, rng.choice([0.5, 5, 40]), n), 0, 360)
            y = np.clip(cy + rng.normal(0, 10, n), 0, 180)
            if rng.random() < 0.3:
                x, y = np.round(x), np.round(y)
            polys.append(np.column_stack([x, y, rng.uniform(0.1, 1.2, n)]))
        anns.append(Annotation(0, 0, 0.0, tuple(polys)))
    boxes = pred_boxes(anns)
    assert boxes[0].tolist() == [1, 0, 1, 0]  # no points: meets nothing
    bounded = 0
    for a, (r0, r1, c0, c1) in zip(anns, boxes):
        r, c = np.nonzero(render_annotation(a.polygons)[0])
        assert ((r >= r0) & (r <= r1) & (c >= c0) & (c <= c1)).all()
        bounded += [r0, r1, c0, c1] != [0, 49, 0, 99]
    assert bounded > 200


def test_render_stack_batches_many_annotations_bit_identically():
    """One render_stack call over many annotations (their polygons triangulated, transformed
    and evaluated together) gives each annotation's reference map."""
    from calib.score.render import render_stack

    rng = np.random.default_rng(21)
    anns = []
    for _ in range(60):
        polys = []
        for _ in range(int(rng.integers(0, 3))):
            n = int(rng.choice([1, 2, 3, 9, 40, 150]))
            cx, cy = rng.uniform(0, 360), rng.uniform(0, 180)
            x = np.mod(cx + rng.normal(0, rng.choice([1, 6, 30]), n), 360)
            y = np.clip(cy + rng.normal(0, 8, n), 0, 180)
            if rng.random() < 0.4:  # pixel lattices, as dense GT blobs
                x, y = np.round(x), np.round(y)
            polys.append(np.column_stack([x, y, rng.uniform(0.05, 1.0, n)]))
        anns.append(polys)
    maps, is32 = render_stack(anns)
    for k, polys in enumerate(anns):
        np.testing.assert_array_equal(maps[k].reshape(50, 100), render_reference(polys))
        assert is32[k] == render_annotation(polys)[1]
