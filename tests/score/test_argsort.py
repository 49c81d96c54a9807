"""The re-enacted AVX2 argsort: hand cases, libstdc++'s std::sort, and numpy itself on AVX2."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from calib.score.argsort import _std_sort, official_argsort


def test_distinct_keys_sort_like_any_sort():
    keys = np.array([0.3, -1.0, 2.5, 0.0, 7.0])
    assert official_argsort(keys).tolist() == [1, 3, 0, 2, 4]


def test_sorted_input_is_returned_as_is():
    keys = np.array([0.0, 0.0, 1.0, 1.0, 1.0])
    assert official_argsort(keys).tolist() == [0, 1, 2, 3, 4]


def test_four_tied_keys_by_hand():
    # One 4-lane register; network (0,1)(2,3) | (0,3)(1,2) | (0,1)(2,3), swapping only when the
    # lower key is strictly greater. keys 1 1 0 0: layer 1 no swap; layer 2 swaps 0<->3 and
    # 1<->2: indices 3 2 1 0; layer 3 no swap. A stable sort would give 2 3 0 1.
    assert official_argsort(np.array([1.0, 1.0, 0.0, 0.0])).tolist() == [3, 2, 1, 0]


def test_std_sort_matches_libstdcxx():
    # expected order printed by g++ 12 (libstdc++) std::sort on these keys with comp a[i] < a[j]
    keys = np.array([2, 3, 0, 3, 1, 2, 2, 1, 3, 0, 1, 1, 2, 1, 0, 0, 0, 0, 0, 3, 0, 2, 3, 0, 1, 1, 1, 3, 0, 3,
                     3, 3, 0, 1, 2, 1, 2, 2, 2, 0], dtype=np.float64)
    expected = [20, 39, 32, 28, 23, 18, 17, 16, 15, 14, 2, 9, 11, 35, 33, 26, 25, 24, 4, 7, 10, 13, 0, 21, 5, 6,
                38, 37, 36, 34, 12, 1, 19, 31, 30, 29, 3, 27, 8, 22]
    arg = np.arange(keys.size)
    _std_sort(keys, arg, 0, keys.size)
    assert arg.tolist() == expected


def _tie_heavy_arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i, n in enumerate([5, 17, 64, 200, 256, 257, 300, 777, 1500, 4097, 20000]):
        distinct = int(rng.integers(1, max(2, n // 10)))
        vals = -np.round(rng.random(distinct), 2)
        out[f"a{i}"] = vals[rng.integers(0, distinct, n)]
    return out


def _avx2_numpy_argsort(arrays: dict, tmp_path) -> dict | None:
    """numpy's own argsort with AVX-512 dispatch disabled, in a child process (None if unavailable)."""
    src, dst = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(src, **arrays)
    code = ("import sys, numpy as np\n"
            "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
            "sys.exit(3) if not f.get('AVX2') or f.get('X86_V4') or f.get('AVX512_SKX') else None\n"
            "d = np.load(sys.argv[1]); np.savez(sys.argv[2], **{k: np.argsort(d[k]) for k in d.files})\n")
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512_SKX")
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(dst)], env=env, capture_output=True)
    if proc.returncode != 0:
        return None
    with np.load(dst) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_numpy_avx2_argsort_on_ties(tmp_path, seed):
    arrays = _tie_heavy_arrays(seed)
    ref = _avx2_numpy_argsort(arrays, tmp_path)
    if ref is None:
        pytest.skip("this machine/numpy cannot run numpy's AVX2 argsort kernel")
    for k, a in arrays.items():
        np.testing.assert_array_equal(official_argsort(a), ref[k], err_msg=f"{k}: n={a.size}")
