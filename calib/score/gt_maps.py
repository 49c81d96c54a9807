"""The rendered GT maps of one clip, sparse (:class:`GTMaps`): what the GT cache stores.

Kept apart from :mod:`calib.score.fast` (scipy's Qhull and assignment solver) so that a parent
process can read and write the cache without importing them before its pool starts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib.score.cache import PackedArrays

H, W = 50, 100  # the dcase2026 map: rows (elevation) and columns (azimuth)
NPIX = H * W


def concat_ranges(start: np.ndarray, size: np.ndarray) -> np.ndarray:
    """arange(start[i], start[i] + size[i]) for every i, concatenated (no Python loop)."""
    return np.repeat(start - np.cumsum(size) + size, size) + np.arange(size.sum())


@dataclass
class GTMaps(PackedArrays):
    """The GT maps of one clip, sparse: row k holds vals[off[k]:off[k+1]] at flat pixels
    pix[off[k]:off[k+1]]. is32 marks float32 maps (stamped points only).

    Rows are rendered on demand: ``done`` marks the rendered ones. Scoring needs only the GT of
    buckets that have predictions (a bucket without any is all false negatives), so a cold
    score renders what the official scorer would, and a later system adds what it needs."""

    frame: np.ndarray  # int64
    cls: np.ndarray  # int64
    index: np.ndarray  # int64, annotation index in the GT file
    distance: np.ndarray  # float64, NaN when absent
    is32: np.ndarray  # bool
    done: np.ndarray  # bool, rendered
    off: np.ndarray  # int64, n + 1
    pix: np.ndarray  # uint16
    vals: np.ndarray  # float64

    FIELDS = ("frame", "cls", "index", "distance", "is32", "done", "off", "pix", "vals")

    def __len__(self) -> int:
        return int(self.frame.size)

    def dense(self, rows) -> np.ndarray:
        """(len(rows), NPIX) float64: the full maps of these rows."""
        rows = np.asarray(rows, dtype=np.intp)
        start, size = self.off[rows], self.off[rows + 1] - self.off[rows]
        at = concat_ranges(start, size)  # their entries in pix / vals
        out = np.zeros((rows.size, NPIX), dtype=np.float64)
        out[np.repeat(np.arange(rows.size), size), self.pix[at]] = self.vals[at]
        return out
