"""Prediction-side reuse (dcase2026): each detection's soft IoUs with the GT of its bucket, kept by
content, so a variant that only subsets or rescores detections is scored with nothing rendered.

What a detection brings to the official matching is fixed by the clip's GT, its (frame, class)
bucket and its points: its float32 soft IoU with every GT annotation of the bucket (the row of the
bucket's IoU matrix) and, for whichever pair the Hungarian assignment picks, the Pearson r over
that GT's pixels. :class:`PredIoUs` holds both per detection for every GT of its bucket, keyed by
:meth:`calib.score.columns.ClipAnnotations.render_keys` (128-bit content keys), one entry per GT
clip. Scoring a table is then: look its detections up (a vectorized search), render and compute
only the misses (:func:`calib.score.fast.compute_pred_rows`), run the assignment of each bucket on
the cached submatrix of the detections present, and build the records and AP exactly as always.
A threshold, a cap, a reranker's new scores or a fold's subset change nothing the rows depend on.

Entries live beside the GT maps in :data:`calib.score.cache.GT_CACHE` (memory, least recently
used dropped beyond its byte budget) under kind ``dcase2026-pred`` and the GT clip's digest, and,
with a cache folder, as ``.npz`` files (read with ``allow_pickle=False``) in its ``pred/``
sub-folder, where another process (the next ``calib run``, ``calib portfolio`` or
``calib score --cache``) finds them. An entry only grows: a run merges its new rows into what the
cache held and writes the union (two processes writing the same entry at once may lose each
other's new rows, never corrupt them: files are replaced atomically).

Kept free of scipy (like :mod:`calib.score.gt_maps`) so a parent process can read and write
entries without loading what its pool workers need.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calib.score.cache import PackedArrays, entry_key
from calib.score.gt_maps import concat_ranges

PRED_KIND = "dcase2026-pred"
PRED_SUBDIR = "pred"
#: bump when the rows' meaning or the render keys change (old entries are then never read)
PRED_CACHE_VERSION = "1"


def pred_entry_key(gt_digest: str) -> str:
    """The cache key of a GT clip's prediction rows."""
    return entry_key(PRED_KIND, gt_digest, version=PRED_CACHE_VERSION)


def pred_cache_dir(cache_dir):
    """Where the prediction rows of a scorer cache folder live (None: memory only)."""
    return None if cache_dir is None else Path(cache_dir) / PRED_SUBDIR


def sort_keys(keys: np.ndarray) -> np.ndarray:
    """Order of (n, 2) uint64 keys: by the first lane, then the second."""
    return np.lexsort((keys[:, 1], keys[:, 0]))


def find_rows(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Row of each key of ``keys`` in ``table`` ((n, 2) uint64 sorted by :func:`sort_keys`,
    unique), -1 where absent. A binary search on the first lane, the second lane compared."""
    rows = np.full(len(keys), -1, dtype=np.int64)
    if not len(table) or not len(keys):
        return rows
    first = table[:, 0]
    lo = np.searchsorted(first, keys[:, 0], side="left")
    hi = np.searchsorted(first, keys[:, 0], side="right")
    one = np.flatnonzero(hi - lo == 1)
    hit = one[table[lo[one], 1] == keys[one, 1]]
    rows[hit] = lo[hit]
    for q in np.flatnonzero(hi - lo > 1).tolist():  # equal first lanes: about 2**-64 per pair of keys
        j = int(lo[q] + np.searchsorted(table[lo[q]: hi[q], 1], keys[q, 1]))
        if j < hi[q] and table[j, 1] == keys[q, 1]:
            rows[q] = j
    return rows


@dataclass
class PredIoUs(PackedArrays):
    """Cached rows of one GT clip: detection k (content key ``key[k]``, sorted, unique) has the soft
    IoU ``iou[off[k]:off[k+1]]`` (float32, as the official IoU matrix holds it) with each GT of its
    bucket in GT file order, and the Pearson r of each of those pairs in ``pearson`` (NaN where
    undefined). ``sources``: content digests of prediction files every detection of which has a
    row (a warm ``calib score`` of those files renders nothing, so it needs no pool)."""

    key: np.ndarray  # (n, 2) uint64
    off: np.ndarray  # int64, n + 1
    iou: np.ndarray  # float32
    pearson: np.ndarray  # float64
    sources: np.ndarray  # str

    FIELDS = ("key", "off", "iou", "pearson", "sources")

    def __len__(self) -> int:
        return int(self.key.shape[0])

    @classmethod
    def empty(cls) -> "PredIoUs":
        return cls(key=np.zeros((0, 2), dtype=np.uint64), off=np.zeros(1, dtype=np.int64),
                   iou=np.zeros(0, dtype=np.float32), pearson=np.zeros(0, dtype=np.float64),
                   sources=np.zeros(0, dtype=str))

    @classmethod
    def from_arrays(cls, d):
        out = super().from_arrays(d)
        if out.key.dtype != np.uint64 or out.key.ndim != 2 or out.key.shape[1] != 2 \
                or out.off.shape != (len(out) + 1,) or out.iou.size != out.pearson.size or out.off[-1] != out.iou.size:
            raise ValueError("not a prediction-rows entry")  # the cache treats it as unreadable: a miss
        return out

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key, -1 where absent."""
        return find_rows(self.key, keys)

    def n_gt(self, rows: np.ndarray) -> np.ndarray:
        """Length of each row (the GT count of the detection's bucket)."""
        return self.off[rows + 1] - self.off[rows]

    def take(self, rows: np.ndarray) -> "PredIoUs":
        """These rows, in this order (sources kept)."""
        rows = np.asarray(rows, dtype=np.int64)
        size = self.n_gt(rows)
        at = concat_ranges(self.off[rows], size)
        return PredIoUs(key=self.key[rows], off=np.concatenate(([0], np.cumsum(size))).astype(np.int64),
                        iou=self.iou[at], pearson=self.pearson[at], sources=self.sources)

    def with_source(self, digest: str) -> "PredIoUs":
        return PredIoUs(self.key, self.off, self.iou, self.pearson, np.union1d(self.sources, [digest]))


def merge(old: PredIoUs | None, new: PredIoUs | None) -> PredIoUs | None:
    """Rows of both (``new``'s where a key is in both), sorted by key; sources united."""
    if old is None or new is None:
        return new if old is None else old
    key = np.concatenate([new.key, old.key])
    both = PredIoUs(key=key, off=np.concatenate([new.off[:-1], old.off + new.off[-1]]),
                    iou=np.concatenate([new.iou, old.iou]), pearson=np.concatenate([new.pearson, old.pearson]),
                    sources=np.union1d(new.sources, old.sources))
    order = np.lexsort((np.arange(len(key)), key[:, 1], key[:, 0]))  # by key, new's first among equals
    k = key[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (k[1:] != k[:-1]).any(axis=1)
    return both.take(order[first])
