"""``numpy.argsort`` of float64 keys as a given CPU runs it: how tied scores are ordered.

Tied scores make AP depend on the order ``numpy.argsort(-scores)`` leaves equal keys in, and
that order depends on the CPU: numpy dispatches the default (quicksort) argsort of float64 to
x86-simd-sort's AVX-512 kernel, or to its AVX2 kernel, or to its own introsort. The official
scoring machine ran the AVX2 kernel (checked: the golden vectors reproduce with AVX-512 disabled
and differ with it enabled). This module re-enacts both kernels in numpy, whatever machine calib
runs on (:func:`tie_argsort`; ``tie_order`` "avx2", the official order and the default;
"avx512"; or "stable", numpy's stable sort). Both kernels follow one algorithm with registers of
``lanes`` 64-bit keys (4 for AVX2, 8 for AVX-512):

* already sorted (non-decreasing) keys: the identity;
* arrays of at most 256 keys: a bitonic network over registers (padded with +inf);
  a compare-exchange swaps a pair only when the lower key is strictly greater;
* larger ones: quicksort whose pivot is the middle one (index lanes / 2) of ``lanes`` sampled
  keys, partitioned 4 registers at a time from either end: keys below the pivot fill the left
  in processing order, the others fill the right from its end (AVX2: one key at a time, so in
  reverse order; AVX-512: each register's keys as a group in lane order, groups from the end);
  recursion stops on a side whose keys all equal the pivot;
* after 2*floor(log2(n)) levels without finishing, libstdc++'s ``std::sort`` (introsort) takes
  over, as in x86-simd-sort.

Keys must be free of NaN. Without ties every correct sort gives the same answer, so the plain
stable argsort is used then.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TIE_ORDERS = ("avx2", "avx512", "stable")
OFFICIAL_TIE_ORDER = "avx2"
NETWORK_MAX = 256
UNROLL = 4


@dataclass(frozen=True)
class SimdKernel:
    """What tells x86-simd-sort's 64-bit argsort kernels apart: register width and where the keys
    at or above the pivot are stored on the right side of a partition."""

    lanes: int
    right_in_lane_groups: bool  # AVX-512 compress-store: a register's keys >= pivot keep lane order

    @property
    def block(self) -> int:
        return self.lanes * UNROLL  # keys partitioned per step


KERNELS = {"avx2": SimdKernel(lanes=4, right_in_lane_groups=False),
           "avx512": SimdKernel(lanes=8, right_in_lane_groups=True)}


def check_tie_order(tie_order: str) -> str:
    if tie_order not in TIE_ORDERS:
        raise ValueError(f"tie_order must be one of {', '.join(TIE_ORDERS)}; got {tie_order!r}")
    return tie_order


def has_ties(keys: np.ndarray) -> bool:
    """True when some key occurs more than once (only then can the tie order matter)."""
    keys = np.asarray(keys)
    if keys.size < 2:
        return False
    s = np.sort(keys)
    return bool((s[1:] == s[:-1]).any())


def tie_argsort(keys: np.ndarray, tie_order: str = OFFICIAL_TIE_ORDER) -> np.ndarray:
    """Indices that sort ``keys`` (float64) ascending, equal keys ordered as ``numpy.argsort``
    (default kind) leaves them on an AVX2 machine ("avx2", the official order) or an AVX-512
    one ("avx512"), or as ``kind="stable"`` does ("stable")."""
    check_tie_order(tie_order)
    keys = np.ascontiguousarray(keys, dtype=np.float64)
    n = keys.size
    if tie_order == "stable" or n <= 1:
        return np.argsort(keys, kind="stable")
    if np.isnan(keys).any():
        raise ValueError("tie_argsort: NaN keys are not supported")
    if not (keys[1:] < keys[:-1]).any():  # x86-simd-sort returns at once on sorted input
        return np.arange(n, dtype=np.intp)
    if not has_ties(keys):
        return np.argsort(keys, kind="stable")
    arg = np.arange(n, dtype=np.intp)
    _quicksort(keys, arg, 0, n - 1, 2 * int(math.log2(n)), KERNELS[tie_order])
    return arg


def official_argsort(keys: np.ndarray) -> np.ndarray:
    """Indices that sort ``keys`` (float64) ascending, ties ordered as numpy's AVX2 argsort (the
    official scoring machine's)."""
    return tie_argsort(keys, OFFICIAL_TIE_ORDER)


# ---------------------------------------------------------------------------------------------
# bitonic networks (x86-simd-sort argsort_n_vec: 4-lane ymm or 8-lane zmm registers of 64 bits)

# in-register compare-exchange layers, (lower lane, upper lane) pairs: sort_reg_4lanes /
# bitonic_merge_reg_4lanes and their 8-lane versions (the lane given the max is the upper one)
_IN_REGISTER = {
    (4, "sort"): [((0, 1), (2, 3)), ((0, 3), (1, 2)), ((0, 1), (2, 3))],
    (4, "merge"): [((0, 2), (1, 3)), ((0, 1), (2, 3))],
    (8, "sort"): [((0, 1), (2, 3), (4, 5), (6, 7)), ((0, 3), (1, 2), (4, 7), (5, 6)),
                  ((0, 1), (2, 3), (4, 5), (6, 7)), ((0, 7), (1, 6), (2, 5), (3, 4)),
                  ((0, 2), (1, 3), (4, 6), (5, 7)), ((0, 1), (2, 3), (4, 5), (6, 7))],
    (8, "merge"): [((0, 4), (1, 5), (2, 6), (3, 7)), ((0, 2), (1, 3), (4, 6), (5, 7)),
                   ((0, 1), (2, 3), (4, 5), (6, 7))],
}


def _in_register(layers_out, regs, lanes, kind):
    """Append the in-register compare-exchange layers of every register in ``regs``."""
    for step in _IN_REGISTER[(lanes, kind)]:
        layers_out.append([(r * lanes + a, r * lanes + b) for r in regs for a, b in step])


@lru_cache(maxsize=None)
def _network(num_vecs: int, lanes: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Compare-exchange layers (lo positions, hi positions) of argsort_n_vec<num_vecs>."""
    layers: list[list[tuple[int, int]]] = []
    _in_register(layers, range(num_vecs), lanes, "sort")
    per = 2
    while per <= num_vecs:  # bitonic_fullmerge_n_vec
        groups = [range(g * per, (g + 1) * per) for g in range(num_vecs // per)]
        # reverse the upper half and COEX with the lower half
        layers.append([(regs[i] * lanes + l, regs[per - 1 - i] * lanes + (lanes - 1 - l))
                       for regs in groups for i in range(per // 2) for l in range(lanes)])
        num = per // 2
        while num >= 2:  # bitonic_clean_n_vec
            layers.append([(regs[i + j] * lanes + l, regs[i + j + num // 2] * lanes + l)
                           for regs in groups for j in range(0, per, num) for i in range(num // 2)
                           for l in range(lanes)])
            num //= 2
        _in_register(layers, range(num_vecs), lanes, "merge")
        per *= 2
    return tuple((np.array([a for a, _ in L], dtype=np.intp), np.array([b for _, b in L], dtype=np.intp))
                 for L in layers)


def _network_sizes(n: np.ndarray, lanes: int) -> np.ndarray:
    """Registers argsort_n_vec sorts ``n`` keys in: the fewest, halving from NETWORK_MAX / lanes,
    that leave more than half of them holding keys."""
    num_vecs = np.full(n.shape, NETWORK_MAX // lanes, dtype=np.intp)
    while True:
        halve = (num_vecs > 1) & (n * 2 <= num_vecs * lanes)
        if not halve.any():
            return num_vecs
        num_vecs[halve] //= 2


def _network_sort(keys: np.ndarray, arg: np.ndarray, leaves: list[tuple[int, int]], lanes: int) -> None:
    """Sort each leaf ``(left, n)`` of ``arg`` (at most NETWORK_MAX keys, padded with +inf) with its
    bitonic network. A network's compare-exchanges do not depend on the keys, so the leaves of one
    network size go through it together, one numpy call per layer for all of them (the same swaps
    as leaf by leaf: the leaves are disjoint)."""
    if not leaves:
        return
    left = np.array([a for a, _ in leaves], dtype=np.intp)
    n = np.array([m for _, m in leaves], dtype=np.intp)
    num_vecs = _network_sizes(n, lanes)
    for nv in np.unique(num_vecs).tolist():
        sel = num_vecs == nv
        size = nv * lanes
        # (size, leaves): a layer's positions are whole rows, gathered as contiguous blocks
        valid = np.arange(size)[:, None] < n[None, sel]  # a key, not padding
        src = left[None, sel] + np.arange(size)[:, None]
        idx = np.full(valid.shape, -1, dtype=np.intp)
        idx[valid] = arg[src[valid]]
        k = np.full(valid.shape, np.inf)
        k[valid] = keys[idx[valid]]
        for lo, hi in _network(nv, lanes):
            a, b = k[lo], k[hi]
            swap = a > b
            if swap.any():
                k[lo], k[hi] = np.where(swap, b, a), np.where(swap, a, b)
                ia, ib = idx[lo], idx[hi]
                idx[lo], idx[hi] = np.where(swap, ib, ia), np.where(swap, ia, ib)
        arg[src[valid]] = idx[valid]


# ---------------------------------------------------------------------------------------------
# quicksort with vectorized partitions (argsort_, argpartition_unrolled<4>)


def _pivot(keys, arg, left, right, lanes) -> float:
    """get_pivot_64bit: the middle of ``lanes`` keys sampled at equal steps (right inclusive)."""
    size = (right - left) // lanes
    sample = sorted(keys[arg[left + size * k]] for k in range(1, lanes + 1))
    return sample[lanes // 2]


def _partition(keys, arg, left, end, pivot, kernel: SimdKernel):
    """Partition arg[left:end) around pivot; returns (pivot_index, smallest, biggest)."""
    block = kernel.block
    seg_keys = keys[arg[left:end]]
    smallest, biggest = seg_keys.min(), seg_keys.max()
    # make the length a multiple of the block: keys >= pivot swap with the last unprocessed one
    for _ in range((end - left) % block):
        if not keys[arg[left]] < pivot:
            end -= 1
            arg[left], arg[end] = arg[end], arg[left]
        else:
            left += 1
    if left == end:
        return left, smallest, biggest
    seg = arg[left:end].copy()
    ge = keys[seg] >= pivot
    nblocks = seg.size // block
    ge_per_block = ge.reshape(nblocks, block).sum(axis=1)
    order = _block_order(ge_per_block, block)
    seq = seg.reshape(nblocks, block)[order].ravel()
    seq_ge = ge.reshape(nblocks, block)[order].ravel()
    lt_part = seq[~seq_ge]
    at = np.flatnonzero(seq_ge)  # processing positions of the keys >= pivot
    if kernel.right_in_lane_groups:
        # each register's group stored at the right end in lane order: later registers further left
        ge_part = seq[at[np.argsort(-(at // kernel.lanes), kind="stable")]]
    else:
        ge_part = seq[at][::-1]  # one key at a time from the end
    arg[left : left + lt_part.size] = lt_part
    arg[left + lt_part.size : end] = ge_part
    return left + lt_part.size, smallest, biggest


def _block_order(ge_per_block: np.ndarray, block: int) -> np.ndarray:
    """The order argpartition_unrolled takes a segment's ``nblocks`` blocks in (``ge_per_block``: the
    keys >= pivot in each): the first and last are kept aside and taken last; between them, each
    step takes the next block from whichever end has fewer keys stored on its side.

    With i blocks taken from the left and j from the right, holding G keys >= pivot, the kernel's
    test ``(r_store + lanes) - right < left - l_store`` reads j * block < G: it takes from the right
    exactly when R(j) < A(i), A(i) the keys >= pivot of the first i left blocks and R(j) the keys
    < pivot of the first j right blocks. Both only grow, so the steps are the merge of the two
    sequences (ties to the left), found with two searchsorted calls instead of a loop per block."""
    nblocks = ge_per_block.size
    m = nblocks - 2  # the blocks between the first and the last, each taken once
    ends = np.array([0, nblocks - 1], dtype=np.intp)
    if m <= 0:
        return ends
    g = ge_per_block.astype(np.int64)
    left_gen = np.concatenate(([0], np.cumsum(g[1 : m])))  # A(i), i = 0..m-1: before block i + 1
    right_lt = np.concatenate(([0], np.cumsum(block - g[m:1:-1])))  # R(j), j = 0..m-1: before block m - j
    pos_left = np.arange(m) + np.searchsorted(right_lt, left_gen, side="left")
    pos_right = np.arange(m) + np.searchsorted(left_gen, right_lt, side="right")
    order = np.empty(m, dtype=np.intp)
    take = pos_left < m
    order[pos_left[take]] = np.arange(1, m + 1)[take]
    take = pos_right < m
    order[pos_right[take]] = np.arange(m, 0, -1)[take]
    return np.concatenate((order, ends))


def _quicksort(keys, arg, left, right, max_iters, kernel: SimdKernel) -> None:
    leaves: list[tuple[int, int]] = []  # segments left to the bitonic networks, sorted together at the end
    stack = [(left, right, max_iters)]
    while stack:
        left, right, max_iters = stack.pop()
        if right < left:
            continue
        if max_iters <= 0:
            _std_sort(keys, arg, left, right + 1)
            continue
        if right + 1 - left <= NETWORK_MAX:
            leaves.append((left, right + 1 - left))
            continue
        pivot = _pivot(keys, arg, left, right, kernel.lanes)
        pivot_index, smallest, biggest = _partition(keys, arg, left, right + 1, pivot, kernel)
        # recursion order does not matter: the two sides are disjoint
        if pivot != biggest:
            stack.append((pivot_index, right, max_iters - 1))
        if pivot != smallest:
            stack.append((left, pivot_index - 1, max_iters - 1))
    _network_sort(keys, arg, leaves, kernel.lanes)


# ---------------------------------------------------------------------------------------------
# libstdc++ std::sort on indices compared by key (introsort + final insertion sort)

_S_THRESHOLD = 16


def _std_sort(keys, arg, first, last) -> None:
    if last - first < 2:
        return
    a = arg[first:last].tolist()
    k = keys
    _introsort_loop(a, k, 0, len(a), 2 * (len(a).bit_length() - 1))
    _final_insertion_sort(a, k, 0, len(a))
    arg[first:last] = a


def _introsort_loop(a, k, first, last, depth) -> None:
    while last - first > _S_THRESHOLD:
        if depth == 0:
            _heap_sort(a, k, first, last)
            return
        depth -= 1
        cut = _unguarded_partition_pivot(a, k, first, last)
        _introsort_loop(a, k, cut, last, depth)
        last = cut


def _unguarded_partition_pivot(a, k, first, last) -> int:
    mid = first + (last - first) // 2
    _move_median_to_first(a, k, first, first + 1, mid, last - 1)
    return _unguarded_partition(a, k, first + 1, last, first)


def _move_median_to_first(a, k, result, x, y, z) -> None:
    kx, ky, kz = k[a[x]], k[a[y]], k[a[z]]
    if kx < ky:
        if ky < kz:
            m = y
        elif kx < kz:
            m = z
        else:
            m = x
    elif kx < kz:
        m = x
    elif ky < kz:
        m = z
    else:
        m = y
    a[result], a[m] = a[m], a[result]


def _unguarded_partition(a, k, first, last, pivot) -> int:
    pk = k[a[pivot]]
    while True:
        while k[a[first]] < pk:
            first += 1
        last -= 1
        while pk < k[a[last]]:
            last -= 1
        if not first < last:
            return first
        a[first], a[last] = a[last], a[first]
        first += 1


def _final_insertion_sort(a, k, first, last) -> None:
    if last - first > _S_THRESHOLD:
        _insertion_sort(a, k, first, first + _S_THRESHOLD)
        for i in range(first + _S_THRESHOLD, last):
            _unguarded_linear_insert(a, k, i)
    else:
        _insertion_sort(a, k, first, last)


def _insertion_sort(a, k, first, last) -> None:
    for i in range(first + 1, last):
        if k[a[i]] < k[a[first]]:
            v = a[i]
            a[first + 1 : i + 1] = a[first:i]
            a[first] = v
        else:
            _unguarded_linear_insert(a, k, i)


def _unguarded_linear_insert(a, k, last) -> None:
    v = a[last]
    kv = k[v]
    nxt = last - 1
    while kv < k[a[nxt]]:
        a[last] = a[nxt]
        last = nxt
        nxt -= 1
    a[last] = v


def _heap_sort(a, k, first, last) -> None:
    """std::__partial_sort(first, last, last): make_heap then sort_heap."""
    n = last - first
    if n < 2:
        return
    parent = (n - 2) // 2
    while True:
        _adjust_heap(a, k, first, parent, n, a[first + parent])
        if parent == 0:
            break
        parent -= 1
    while n > 1:
        n -= 1
        v = a[first + n]
        a[first + n] = a[first]
        _adjust_heap(a, k, first, 0, n, v)


def _adjust_heap(a, k, first, hole, length, value) -> None:
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if k[a[first + child]] < k[a[first + child - 1]]:
            child -= 1
        a[first + hole] = a[first + child]
        hole = child
    if (length & 1) == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        a[first + hole] = a[first + child - 1]
        hole = child - 1
    # __push_heap
    parent = (hole - 1) // 2
    kv = k[value]
    while hole > top and k[a[first + parent]] < kv:
        a[first + hole] = a[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    a[first + hole] = value
