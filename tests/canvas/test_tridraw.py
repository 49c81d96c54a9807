"""The table path of the triangle rasterizer (calib.canvas.tridraw) draws exactly what the ragged
path draws: the same pixels, the same values, bit for bit."""
import numpy as np
import pytest

import calib.canvas.tridraw as tridraw
from calib.canvas.points import from_polygons
from calib.canvas.raster import rasterize


def P(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _cases():
    rng = np.random.default_rng(11)
    groups = []
    # scattered peaks: small triangles (one or two rows, a pixel or two per row) and some larger
    for _ in range(40):
        n = int(rng.integers(6, 21))
        groups.append([np.column_stack([rng.uniform(50, 50 + rng.uniform(2, 40), n),
                                        rng.uniform(20, 20 + rng.uniform(2, 30), n), rng.random(n)])])
    # peaks on integer rows and columns (triangle corners and edges on pixels), with repeats
    for _ in range(20):
        n = int(rng.integers(6, 15))
        pts = np.column_stack([rng.integers(100, 108, n), rng.integers(40, 45, n), rng.random(n)]).astype(float)
        groups.append([np.concatenate([pts, pts[:2]])])
    # cocircular: a square's corners and centre; a regular octagon; collinear points; a thin sliver
    groups.append([P([10, 10, 1], [12, 10, 2], [12, 12, 3], [10, 12, 4], [11, 11, 0.5])])
    ang = np.arange(8) * np.pi / 4
    groups.append([np.column_stack([30 + 3 * np.cos(ang), 60 + 3 * np.sin(ang), np.arange(1.0, 9.0)])])
    groups.append([P([5, 5, 1], [6, 5, 2], [7, 5, 3], [8, 5, 1])])
    groups.append([P([40.2, 90.1, 1], [47.9, 90.4, 2], [44.0, 90.55, 3])])
    # across the seam and at both poles
    groups.append([P([358.5, 3.2, 1], [1.7, 4.9, 2], [359.1, 7.3, 3], [0.4, 0.0, 1.5])])
    groups.append([P([200, 180, 1], [201.5, 179.2, 2], [203, 180, 3], [201, 178, 0.5])])
    groups.append([P([250, 0, 1], [251.5, 0.8, 2], [253, 0, 3], [251, 2, 0.5])])
    # a NaN and an infinite energy, a zero and a negative one
    groups.append([P([70, 70, np.nan], [72.5, 70.5, 1], [71, 73.2, 2], [73, 72.4, -1], [70.2, 72.9, 0])])
    groups.append([P([80, 70, np.inf], [82.5, 70.5, 1], [81, 73.2, 2])])
    return groups


@pytest.mark.parametrize("spread", [0.0, 2.0])
@pytest.mark.parametrize("rows,cols", [(4, 2), (1, 1), (8, 3)])
def test_tables_draw_what_the_ragged_rows_draw(monkeypatch, rows, cols, spread):
    fp = from_polygons(_cases())
    monkeypatch.setattr(tridraw, "GRID_ROWS", 0)  # every triangle the ragged way
    ragged = rasterize(fp, spread=spread)
    monkeypatch.setattr(tridraw, "GRID_ROWS", rows)
    monkeypatch.setattr(tridraw, "GRID_COLS", cols)
    for batch in (32_768, 7):
        tables = rasterize(fp, spread=spread, batch=batch)
        assert tables.values.tobytes() == ragged.values.tobytes()
        assert np.array_equal(tables.stamped, ragged.stamped)
        assert np.array_equal(tables.off, ragged.off)


def test_the_cases_use_both_paths():
    fp = from_polygons(_cases())
    seen = []
    real = tridraw._grid

    def spy(g, drew, poly, tri, cy0, j):
        out = real(g, drew, poly, tri, cy0, j)
        seen.append((j, tri.size, out[0].size))
        return out

    import unittest.mock
    with unittest.mock.patch.object(tridraw, "_grid", spy):
        rasterize(fp)
    assert {j for j, n, _ in seen if n} == set(range(1, tridraw.GRID_ROWS + 1))
    assert sum(o for *_, o in seen) > 0  # rows too wide for the tables
