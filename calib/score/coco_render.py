"""The ``dcase2026-coco`` energy renderer, bit for bit as the official 2026-04-02 script.

Every triplet (x, y, e) adds a spherical Gaussian blob ``e * exp(-2 hav / sigma^2)`` to a
180 x 360 float32 canvas, over a window of rows and columns. The rule (SPEC-scoring.md, "the blob
renderer, exactly"):

* window bounds from float64 scalar arithmetic per triplet: rows by elevation +-4 sigma clipped
  at the poles (:func:`row_window`); columns by a half-width of 4 sigma / max(cos el0, 0.087) at
  most 180 degrees, taken after a round trip through radians, wrapped at the seam as two pieces
  added one after the other (:func:`column_pieces`): a column in both pieces gets the blob twice,
  and when both ends overflow the window is only the two short pieces;
* the kernel in float32 over float32 grids (:data:`AZ_GRID`, :data:`EL_GRID`);
* blobs added to the float32 canvas one after another in file order, so each pixel's value is
  a sequential float32 sum.

:func:`render_energy_reference` transcribes that literally, one triplet at a time.
:func:`render_energies` computes the same float32 maps for many annotations at once: the float64
window arithmetic on whole arrays, the kernels of consecutive triplets with equal window shapes
in one float32 pass, and ``np.add.at`` (which applies repeated indices one after another) to add
them in file order, so every pixel sees the same additions in the same order.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np

ROWS, COLS = 180, 360
NPIX = ROWS * COLS
COS_FLOOR = 0.087
WINDOW_SIGMAS = 4.0

#: pixel-centre azimuth (radians) of each column and elevation of each row, computed in float32
#: as the official script does (c / 360 * 360 - 180 and 90 - r / 179 * 180 in float32, then radians)
AZ_GRID = np.radians(np.arange(COLS, dtype=np.float32) / 360 * 360 - 180)
EL_GRID = np.radians(90 - np.arange(ROWS, dtype=np.float32) / 179 * 180)
COS_EL = np.cos(EL_GRID)

_ELEMENT_BUDGET = 1 << 16  # kernel values per float32 pass: 256 KiB blocks stay in cache (measured best)
_CANVAS_BUDGET = 64  # annotations rendered per stack of canvases


def kernel_constants(sigma: float) -> tuple[float, float]:
    """(cutoff, k): the window reach 4 sigma and the kernel's 0.5 / sigma^2, sigma in radians."""
    s = math.radians(sigma)
    return WINDOW_SIGMAS * s, 0.5 / s**2


def triplet_direction(x: float, y: float) -> tuple[float, float]:
    """(az0, el0) in radians of a canvas point: az = x / 360 * 360 - 180, el = 90 - y / 179 * 180."""
    return math.radians(x / 360 * 360 - 180), math.radians(90 - y / 179 * 180)


def row_window(el0: float, cutoff: float) -> tuple[int, int]:
    """Rows r0..r1-1 of a blob at elevation el0 (radians): the elevations within the cutoff,
    clipped to the poles, turned into rows with 179 row steps over pi (empty when r0 >= r1)."""
    el_hi = min(math.pi / 2, el0 + cutoff)
    el_lo = max(-math.pi / 2, el0 - cutoff)
    r0 = max(0, math.floor((math.pi / 2 - el_hi) / math.pi * 179))
    r1 = min(ROWS, math.ceil((math.pi / 2 - el_lo) / math.pi * 179) + 1)
    return r0, r1


def column_span(az0: float, el0: float, cutoff: float) -> tuple[int, int]:
    """(c_lo, c_hi): the unwrapped column window [c_lo, c_hi) of a blob at (az0, el0) radians."""
    half = min(math.pi, cutoff / max(math.cos(el0), COS_FLOOR))
    half_deg, az0_deg = math.degrees(half), math.degrees(az0)  # the official round trip through radians
    c_lo = math.floor((az0_deg - half_deg + 180) / 360 * 360)
    c_hi = math.ceil((az0_deg + half_deg + 180) / 360 * 360) + 1
    return c_lo, c_hi


def column_pieces(c_lo: int, c_hi: int) -> list[tuple[int, int]]:
    """The column ranges [a, b) a window [c_lo, c_hi) is added over, in the official order.

    Inside the canvas: one piece. Otherwise, with lo = c_lo mod 360 and hi = c_hi mod 360 (360
    when that is 0): [0, hi) then [lo, 360) when c_lo < 0 (even if c_hi overflows too), else
    [lo, 360) then [0, hi). Pieces may overlap (those columns get the blob twice) and, when both
    ends overflow, leave the middle out."""
    if 0 <= c_lo and c_hi <= COLS:
        return [(c_lo, c_hi)]
    lo, hi = c_lo % COLS, (c_hi % COLS) or COLS
    if c_lo < 0:
        return [(0, hi), (lo, COLS)]
    return [(lo, COLS), (0, hi)]


def render_energy_reference(polygons, sigma: float = 6.0) -> np.ndarray:
    """The energy map of one annotation, one triplet at a time, literally as the official script:
    float64 scalars for the window, float32 grids and kernel, blobs added in file order."""
    canvas = np.zeros((ROWS, COLS), dtype=np.float32)
    cutoff, k = kernel_constants(sigma)
    for poly in polygons:
        for x, y, e in np.asarray(poly, dtype=np.float64).reshape(-1, 3).tolist():
            az0, el0 = triplet_direction(x, y)
            r0, r1 = row_window(el0, cutoff)
            if r0 >= r1:
                continue
            hav_el = np.sin((EL_GRID[r0:r1] - el0) / 2) ** 2
            row_factor = math.cos(el0) * COS_EL[r0:r1]
            for a, b in column_pieces(*column_span(az0, el0, cutoff)):
                if a >= b:
                    continue
                hav_az = np.sin((AZ_GRID[a:b] - az0) / 2) ** 2
                hav = hav_el[:, None] + row_factor[:, None] * hav_az[None, :]
                hav *= -4 * k
                blob = np.exp(hav)
                blob *= e
                canvas[r0:r1, a:b] += blob
    return canvas


# ---------------------------------------------------------------------------------------------
# the same maps, many triplets per numpy call


def triplet_windows(pts: np.ndarray, sigma: float) -> dict[str, np.ndarray]:
    """Per triplet of an (N, 3) float64 array: the window and the kernel's float32 scalars.

    The float64 arithmetic of :func:`triplet_direction`, :func:`row_window` and
    :func:`column_span` on whole arrays (the same IEEE operations in the same order, so the same
    bits; cos comes from ``math.cos`` over the distinct elevations, as the official scalars do).
    The column window is returned as one unwrapped range [col0, col0 + ncols) taken mod 360,
    which holds the same columns as :func:`column_pieces` (with the same repeats)."""
    cutoff, _ = kernel_constants(sigma)
    x, y, e = pts[:, 0], pts[:, 1], pts[:, 2]
    az0 = np.radians(x / 360 * 360 - 180)
    el0 = np.radians(90 - y / 179 * 180)
    uniq, inv = np.unique(el0, return_inverse=True)
    cos_el0 = np.fromiter((math.cos(v) for v in uniq.tolist()), dtype=np.float64, count=uniq.size)[inv]
    el_hi = np.minimum(math.pi / 2, el0 + cutoff)
    el_lo = np.maximum(-math.pi / 2, el0 - cutoff)
    r0 = np.maximum(0, np.floor((math.pi / 2 - el_hi) / math.pi * 179)).astype(np.int64)
    r1 = np.minimum(ROWS, np.ceil((math.pi / 2 - el_lo) / math.pi * 179) + 1).astype(np.int64)
    half = np.minimum(math.pi, cutoff / np.maximum(cos_el0, COS_FLOOR))
    half_deg, az0_deg = np.degrees(half), np.degrees(az0)
    c_lo = np.floor((az0_deg - half_deg + 180) / 360 * 360).astype(np.int64)
    c_hi = np.ceil((az0_deg + half_deg + 180) / 360 * 360).astype(np.int64) + 1
    # both ends outside the canvas: only the pieces [c_lo + 360, 360) and [0, c_hi - 360)
    both = (c_lo < 0) & (c_hi > COLS)
    col0 = np.where(both, c_lo + COLS, c_lo)
    return {
        "row0": r0,
        "nrows": np.maximum(r1 - r0, 0),
        "col0": col0,
        "ncols": c_hi - col0,
        "el0": el0.astype(np.float32),
        "az0": az0.astype(np.float32),
        "cos_el0": cos_el0.astype(np.float32),
        "e": e.astype(np.float32),
    }


def _runs(nrows: np.ndarray, ncols: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """[start, end) runs of consecutive triplets with the same window shape, each within the
    element budget (at least one triplet)."""
    n = nrows.size
    if n == 0:
        return []
    cuts = np.flatnonzero((nrows[1:] != nrows[:-1]) | (ncols[1:] != ncols[:-1])) + 1
    out = []
    for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, n].tolist()):
        per = max(1, budget // max(1, int(nrows[a]) * int(ncols[a])))
        out.extend((s, min(s + per, b)) for s in range(a, b, per))
    return out


def _add_blobs(canvas: np.ndarray, owner: np.ndarray, w: dict[str, np.ndarray], k: float) -> None:
    """Add every triplet's blob to ``canvas`` (flat float32, one 180 x 360 map per owner), in
    triplet order. Triplets of a run share a window shape: their kernels form one (T, R, C)
    float32 block computed with the reference's operations, element for element."""
    m4k = -4 * k
    for s, t in _runs(w["nrows"], w["ncols"], _ELEMENT_BUDGET):
        nr, nc = int(w["nrows"][s]), int(w["ncols"][s])
        if nr == 0 or nc == 0:
            continue
        rows = w["row0"][s:t, None] + np.arange(nr)
        cols = (w["col0"][s:t, None] + np.arange(nc)) % COLS
        hav_el = np.sin((EL_GRID[rows] - w["el0"][s:t, None]) / 2) ** 2
        row_factor = w["cos_el0"][s:t, None] * COS_EL[rows]
        hav_az = np.sin((AZ_GRID[cols] - w["az0"][s:t, None]) / 2) ** 2
        hav = np.multiply(row_factor[:, :, None], hav_az[:, None, :])
        hav += hav_el[:, :, None]  # hav_el + row_factor * hav_az (float addition commutes exactly)
        hav *= m4k
        np.exp(hav, out=hav)
        hav *= w["e"][s:t, None, None]
        base = owner[s:t, None] * NPIX + rows * COLS
        np.add.at(canvas, (base[:, :, None] + cols[:, None, :]).ravel(), hav.ravel())


def render_energies(annotations: Sequence, sigma: float = 6.0) -> Iterator[np.ndarray]:
    """The energy maps (180 x 360 float32) of many annotations (each a sequence of polygons),
    in order; equal bit for bit to :func:`render_energy_reference` of each."""
    _, k = kernel_constants(sigma)
    annotations = list(annotations)
    for first in range(0, len(annotations), _CANVAS_BUDGET):
        chunk = annotations[first : first + _CANVAS_BUDGET]
        polys = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for polygons in chunk for p in polygons]
        counts = np.array([sum(np.asarray(p).size // 3 for p in polygons) for polygons in chunk], dtype=np.int64)
        canvas = np.zeros(len(chunk) * NPIX, dtype=np.float32)
        if counts.sum():
            pts = np.concatenate(polys)
            owner = np.repeat(np.arange(len(chunk), dtype=np.int64), counts)
            _add_blobs(canvas, owner, triplet_windows(pts, sigma), k)
        yield from canvas.reshape(len(chunk), ROWS, COLS)


def render_energy(polygons, sigma: float = 6.0) -> np.ndarray:
    """The energy map of one annotation (:func:`render_energies` of one)."""
    return next(render_energies([polygons], sigma))
