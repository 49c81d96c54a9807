"""The re-enacted AVX2 and AVX-512 argsorts: hand cases, libstdc++'s std::sort, numpy's own
outputs recorded on an AVX-512 machine (tests/data/argsort_oracles.npz, checked everywhere), and
numpy itself where its runtime has the kernel."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import calib.score.argsort as argsort_module
from calib.score.argsort import (KERNELS, _block_order, _network, _network_sizes, _network_sort, _partition, _std_sort,
                                 official_argsort, tie_argsort)

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def oracles() -> dict:
    with np.load(DATA / "argsort_oracles.npz") as z:
        meta = json.loads(str(z["meta"]))
        return {k: {o: z[f"{o}/{k}"] for o in ("keys", "avx2", "avx512")} for k in meta["cases"]}


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


def test_eight_tied_keys_through_the_register_network_by_hand():
    # 8 keys fill one 8-lane register (AVX-512) or two 4-lane ones (AVX2): the same bitonic sorter.
    # 1 1 1 1 0 0 0 0: every pair of the first three layers is tied (no swap); the fourth layer
    # (0,7)(1,6)(2,5)(3,4) swaps all four pairs (1 > 0): 7 6 5 4 3 2 1 0; the rest are tied again.
    keys = np.array([1.0, 1, 1, 1, 0, 0, 0, 0])
    for order in ("avx2", "avx512"):
        assert tie_argsort(keys, order).tolist() == [7, 6, 5, 4, 3, 2, 1, 0]
    assert tie_argsort(keys, "stable").tolist() == [4, 5, 6, 7, 0, 1, 2, 3]


def test_avx512_partition_stores_each_register_s_keys_in_lane_order_by_hand():
    # 64 keys = 2 blocks of 4 x 8 lanes, both kept aside and partitioned last in order (block 0
    # then 1), so registers are processed in index order 0..7, 8..15, ... Keys at lanes 0 and 1
    # of each register equal the pivot (>=): the others go left in order; each register's pair is
    # compress-stored at the right end in lane order, later registers to the left of earlier ones.
    keys = np.where(np.arange(64) % 8 < 2, 1.0, 0.0)
    arg = np.arange(64)
    split, smallest, biggest = _partition(keys, arg, 0, 64, 1.0, KERNELS["avx512"])
    assert (split, smallest, biggest) == (48, 0.0, 1.0)
    assert arg[:48].tolist() == [i for i in range(64) if i % 8 >= 2]
    assert arg[48:].tolist() == [56, 57, 48, 49, 40, 41, 32, 33, 24, 25, 16, 17, 8, 9, 0, 1]
    # AVX2 (4 x 4 lanes per block, 4 blocks) stores one key at a time from the end: reversed pairs
    arg = np.arange(64)
    assert _partition(keys, arg, 0, 64, 1.0, KERNELS["avx2"])[0] == 48
    assert sorted(arg[48:].tolist()) == [i for i in range(64) if i % 8 < 2]


def _block_order_by_steps(ge_per_block, block):
    # x86-simd-sort's loop as written: the first and last blocks aside, then from whichever end
    # has fewer keys stored on its side (`(r_store + lanes) - right < left - l_store`)
    nblocks = len(ge_per_block)
    order, lo, hi, l_store, r_room = [], 1, nblocks - 1, 0, 0
    while lo < hi:
        if (nblocks * block - r_room) - hi * block < lo * block - l_store:
            hi -= 1
            b = hi
        else:
            b = lo
            lo += 1
        order.append(b)
        r_room += int(ge_per_block[b])
        l_store += block - int(ge_per_block[b])
    return order + [0, nblocks - 1]


def test_block_order_by_hand():
    # 5 blocks of 4 keys, middle blocks 1..3 holding 4, 0, 0 keys >= pivot. Nothing stored yet:
    # 0 < 0 is false, block 1 from the left (4 keys go right); then 0 < 4: block 3 from the right
    # (its 4 keys < pivot go left); then 4 < 4 is false: block 2 from the left
    assert _block_order(np.array([2, 4, 0, 0, 1]), 4).tolist() == [1, 3, 2, 0, 4]
    assert _block_order_by_steps([2, 4, 0, 0, 1], 4) == [1, 3, 2, 0, 4]
    assert _block_order(np.array([3, 1]), 4).tolist() == [0, 1]


def test_block_order_is_the_kernel_s_loop_on_random_counts():
    rng = np.random.default_rng(5)
    for _ in range(2000):
        block = int(rng.choice([16, 32]))
        nblocks = int(rng.integers(2, 60))
        skew = rng.random()  # from mostly below the pivot to mostly above
        ge = rng.binomial(block, skew, nblocks)
        if rng.random() < 0.3:
            ge[rng.random(nblocks) < 0.5] = rng.choice([0, block])  # full and empty blocks: ties
        assert _block_order(ge, block).tolist() == _block_order_by_steps(ge, block), (block, ge.tolist())


@pytest.mark.parametrize("lanes", [4, 8])
def test_leaves_sorted_together_as_one_by_one(lanes):
    # the batched networks give each leaf what its own network gives it, leaf by leaf
    rng = np.random.default_rng(6)
    sizes = rng.integers(1, 257, 40)
    left = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    keys = np.round(rng.random(int(sizes.sum())), 1)  # many ties
    arg = rng.permutation(keys.size)
    got = arg.copy()
    _network_sort(keys, got, list(zip(left.tolist(), sizes.tolist())), lanes)
    want = arg.copy()
    for a, n, nv in zip(left.tolist(), sizes.tolist(), _network_sizes(sizes, lanes).tolist()):
        k = np.full(nv * lanes, np.inf)
        idx = np.full(nv * lanes, -1)
        idx[:n] = want[a : a + n]
        k[:n] = keys[idx[:n]]
        for lo, hi in _network(nv, lanes):
            for x, y in zip(lo.tolist(), hi.tolist()):
                if k[x] > k[y]:
                    k[x], k[y] = k[y], k[x]
                    idx[x], idx[y] = idx[y], idx[x]
        want[a : a + n] = idx[:n]
    np.testing.assert_array_equal(got, want)
    assert all((np.diff(keys[got[a : a + n]]) >= 0).all() for a, n in zip(left.tolist(), sizes.tolist()))


@pytest.mark.parametrize("order", ["avx2", "avx512"])
def test_matches_numpy_argsort_recorded_on_an_avx512_machine(oracles, order):
    for name, case in oracles.items():
        np.testing.assert_array_equal(tie_argsort(case["keys"], order), case[order].astype(np.intp), err_msg=name)


def test_the_recorded_oracles_cover_networks_partitions_and_std_sort(oracles, monkeypatch):
    sizes = [c["keys"].size for c in oracles.values()]
    assert min(sizes) == 2 and max(sizes) > 10_000 and any(257 <= n <= 512 for n in sizes)
    reached = {"avx2": 0, "avx512": 0}
    current = []

    def counting(*a):
        reached[current[-1]] += 1
        return _std_sort(*a)

    monkeypatch.setattr(argsort_module, "_std_sort", counting)
    for case in oracles.values():
        for order in reached:
            current.append(order)
            tie_argsort(case["keys"], order)
    assert reached["avx2"] > 0 and reached["avx512"] > 0  # quicksort's depth limit hit, std::sort took over
    assert any(not np.array_equal(c["avx2"], c["avx512"]) for c in oracles.values())


def test_stable_order_and_bad_input():
    keys = np.array([0.5, 0.1, 0.5, 0.1, 0.3])
    assert tie_argsort(keys, "stable").tolist() == [1, 3, 4, 0, 2]
    with pytest.raises(ValueError, match="tie_order must be one of avx2, avx512, stable"):
        tie_argsort(keys, "neon")
    with pytest.raises(ValueError, match="NaN"):
        tie_argsort(np.array([1.0, np.nan, 1.0]), "avx512")


def test_matches_live_numpy_avx512_argsort(numpy_argsort_kernel):
    if numpy_argsort_kernel != "avx512":
        pytest.skip("numpy's runtime does not dispatch argsort to the AVX-512 kernel here")
    rng = np.random.default_rng(77)  # not the oracles' seed: fresh arrays
    for n in [2, 9, 100, 256, 257, 258, 400, 1000, 2500, 7000, 25000]:
        for share in (2, 10, 100):
            distinct = int(rng.integers(1, max(2, n // share) + 1))
            a = -np.round(rng.random(distinct), 3)[rng.integers(0, distinct, n)]
            np.testing.assert_array_equal(tie_argsort(a, "avx512"), np.argsort(a), err_msg=f"n={n}")
