"""calib.canvas.triangulate.delaunay_sets: known answers on hand-made sets (ties, lines, repeats,
seam, pole), and each triangle once though the gift wrapping finds some twice in a round."""
import unittest.mock

import numpy as np

import calib.canvas.triangulate as triangulate
from calib.canvas.triangulate import delaunay_sets

SETS = [
    [(10, 10), (12, 10), (12, 12), (10, 12), (11, 11)],  # a square and its centre: cocircular
    [(x, y) for y in range(3) for x in range(3)],  # a 3 x 3 grid: ties everywhere
    [(5, 5), (6, 5), (7, 5), (8, 5)],  # collinear: none
    [(0, 0), (2, 0), (0, 0), (1, 2), (2, 0), (1, 0.5)],  # repeated points: the first copies
    [(358.5, 3.2), (361.7, 4.9), (359.1, 7.3), (360.4, 0.0)],  # across the seam (unwrapped)
    [(200, 180), (201.5, 179.2), (203, 180), (201, 178)],  # at the south pole
]


def _flat(sets):
    off = np.r_[0, np.cumsum([len(s) for s in sets])]
    xy = np.array([p for s in sets for p in s], float)
    return off, xy[:, 0], xy[:, 1]


def test_hand_made_sets_known_triangles():
    # (the answer of the canonical-rotation dedup this replaced, corner order and rotation included)
    tri, owner = delaunay_sets(*_flat(SETS))
    assert tri.tolist() == [[0, 4, 3], [4, 0, 1], [5, 6, 8], [18, 23, 21], [23, 18, 19], [24, 25, 26],
                            [25, 24, 27], [28, 29, 30], [29, 28, 31], [3, 4, 2], [4, 1, 2], [8, 6, 9],
                            [21, 23, 19], [29, 31, 30], [8, 9, 12], [9, 6, 10], [8, 12, 11], [9, 10, 12],
                            [10, 6, 7], [12, 10, 13]]
    assert owner.tolist() == [0, 0, 1, 3, 3, 4, 4, 5, 5, 0, 0, 1, 3, 5, 1, 1, 1, 1, 1, 1]


def test_each_triangle_once_in_order_of_first_finding():
    rng = np.random.default_rng(3)
    sets = [list(map(tuple, rng.random((int(rng.integers(3, 25)), 2)) * 8)) for _ in range(200)]
    sets += [list(map(tuple, rng.integers(0, 4, (int(rng.integers(4, 16)), 2)).astype(float))) for _ in range(100)]
    found, dropped = [], []
    real = triangulate._first_copies

    def spy(ta, tb, tc, *rest):
        out = real(ta, tb, tc, *rest)
        found.append(np.column_stack([ta, tb, tc]))
        dropped.append(ta.size - len(out))
        return out

    with unittest.mock.patch.object(triangulate, "_first_copies", spy):
        tri, _ = delaunay_sets(*_flat(sets))
    assert sum(dropped) > 0  # the cases find triangles twice in a round
    # the same as keeping, of every triangle found (all rounds, in order), its first copy up to rotation
    every = np.concatenate(found)
    rot = np.argmin(every, axis=1)
    ar = np.arange(len(every))
    canon = np.stack([every[ar, rot], every[ar, (rot + 1) % 3], every[ar, (rot + 2) % 3]], axis=1)
    _, first = np.unique(canon, axis=0, return_index=True)
    assert np.array_equal(tri, every[np.sort(first)])
