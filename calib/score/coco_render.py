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
window arithmetic on whole arrays, the kernels of runs of consecutive triplets in one float32
pass each (the same operations element for element), and additions that keep every pixel's
order: a raster row of blobs side by side is summed layer after layer (:func:`_slide_add`), any
other run goes through ``np.add.at``, which applies repeated indices one after another
(:func:`_scatter_add`). Each annotation has its own canvas, so only its own triplets' order
matters.
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

_ELEMENT_BUDGET = 1 << 17  # kernel values per float32 pass (512 KiB: measured best, 2^15..2^18 tried)
_CANVAS_BUDGET = 64  # annotations rendered per stack of canvases (17 MiB)


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


#: column counts grouped into one float32 pass: a run of consecutive triplets whose windows fall
#: on the same step is padded to its widest (and tallest) window. Steps grow by 15 %; the first
#: ends at 52 so that the windows of the whole band around the equator (49-51 columns) share one
_COLUMN_STEPS = np.unique(np.r_[52, np.ceil(52 * 1.15 ** np.arange(1, 20)).astype(np.int64), 2 * COLS + 1])
#: a canvas row and column beyond the map take the padding's additions; they are cut off after
_STRIDE_ROWS, _STRIDE_COLS = ROWS + 1, COLS + 1
_CANVAS = _STRIDE_ROWS * _STRIDE_COLS
_SLIDE_MIN = 3  # triplets in a sliding run worth its fixed cost


def _kernels(w: dict[str, np.ndarray], sel, rows: np.ndarray, cols: np.ndarray, k: float) -> np.ndarray:
    """exp(-4k hav) of the triplets ``sel`` (a slice or indices into ``w``) over their (T, R) rows
    and (T, C) columns: a (T, R, C) float32 block computed with the reference's operations,
    element for element (the blob before its ``*= e``)."""
    grid_rows = np.minimum(rows, ROWS - 1)  # padding rows read a real row: finite values, never used
    hav_el = np.sin((EL_GRID[grid_rows] - w["el0"][sel, None]) / 2) ** 2
    row_factor = w["cos_el0"][sel, None] * COS_EL[grid_rows]
    hav_az = np.sin((AZ_GRID[cols] - w["az0"][sel, None]) / 2) ** 2
    hav = np.multiply(row_factor[:, :, None], hav_az[:, None, :])
    hav += hav_el[:, :, None]  # hav_el + row_factor * hav_az (float addition commutes exactly)
    hav *= -4 * k
    return np.exp(hav, out=hav)


def _plan(owner: np.ndarray, w: dict[str, np.ndarray], budget: int) -> list[tuple[str, int, int]]:
    """How the triplets are added, as [start, end) runs in file order:

    * ("slide", s, t): consecutive triplets of one annotation with the same rows and window width
      whose windows step by a constant number of columns (a raster row of a GT polygon); their
      blobs are laid side by side and summed over the run in order (:func:`_slide_add`);
    * ("scatter", s, t): any others, grouped by :data:`_COLUMN_STEPS` (:func:`_scatter_add`).
    Runs hold at most ``budget`` kernel values (at least one triplet)."""
    n = owner.size
    if n == 0:
        return []
    nrows, ncols, row0, col0 = w["nrows"], w["ncols"], w["row0"], w["col0"]
    step = np.diff(col0)
    linked = ((owner[1:] == owner[:-1]) & (row0[1:] == row0[:-1]) & (nrows[1:] == nrows[:-1])
              & (ncols[1:] == ncols[:-1]) & (step >= 0) & (ncols[1:] + step <= COLS))
    # a link continues a run only with the run's step: break where the step changes
    same_step = np.r_[False, step[1:] == step[:-1]]
    breaks = ~linked | (np.r_[False, linked[:-1]] & ~same_step)
    starts = np.r_[0, np.flatnonzero(breaks) + 1]
    ends = np.r_[starts[1:], n]
    slide = ((ends - starts) >= _SLIDE_MIN) & (ncols[starts] <= COLS)
    plan = []
    rest = np.ones(n, dtype=bool)
    for a, b in zip(starts[slide].tolist(), ends[slide].tolist()):
        st, nr, nc = int(col0[a + 1] - col0[a]), int(nrows[a]), int(ncols[a])
        # side by side the run spans nc + st * (T - 1) columns: at most 360, and within budget
        per = max(1, min(budget // max(1, nr * (nc + st)), (COLS - nc) // st + 1 if st else b - a))
        plan.extend(("slide", s, min(s + per, b)) for s in range(a, b, per))
        rest[a:b] = False
    key = np.where(rest, np.searchsorted(_COLUMN_STEPS, ncols), -1)
    cuts = np.flatnonzero(key[1:] != key[:-1]) + 1
    for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, n].tolist()):
        if rest[a]:
            per = max(1, budget // max(1, int(nrows[a:b].max()) * int(ncols[a:b].max())))
            plan.extend(("scatter", s, min(s + per, b)) for s in range(a, b, per))
    plan.sort(key=lambda r: r[1])
    return plan


def _slide_add(canvas: np.ndarray, owner: np.ndarray, w: dict[str, np.ndarray], s: int, t: int, k: float) -> None:
    """Add the blobs of a sliding run (see :func:`_plan`): each blob is written into its own
    layer of a zeroed (T, R, width) block at its column offset, the canvas region is added to
    layer 0, and the layers are summed in order along the first axis (numpy reduces an outer axis
    one layer after another), which adds each pixel's values one after another in file order;
    the zeros around each blob add nothing."""
    nr, nc, T = int(w["nrows"][s]), int(w["ncols"][s]), t - s
    st = int(w["col0"][s + 1] - w["col0"][s]) if T > 1 else 0
    width = nc + st * (T - 1)
    layers = np.zeros((T, nr, width), dtype=np.float32)
    sz = layers.itemsize
    # layer i's blob starts i * st columns further right: a view with one extra step per layer
    diag = np.ndarray((T, nr, nc), dtype=np.float32, buffer=layers,
                      strides=(layers.strides[0] + st * sz, layers.strides[1], sz))
    rows = w["row0"][s:t, None] + np.arange(nr)
    cols = (w["col0"][s:t, None] + np.arange(nc)) % COLS
    np.multiply(_kernels(w, slice(s, t), rows, cols, k), w["e"][s:t, None, None], out=diag)  # `blob *= e`
    r0, c0 = int(w["row0"][s]), int(w["col0"][s]) % COLS
    region = canvas[int(owner[s]), r0 : r0 + nr]
    if c0 + width <= COLS:  # the usual case: one block of columns, summed in place
        block = region[:, c0 : c0 + width]
        layers[0] += block
        np.add.reduce(layers, axis=0, out=block)
    else:  # across the seam
        box = (c0 + np.arange(width)) % COLS
        layers[0] += region[:, box]
        region[:, box] = np.add.reduce(layers, axis=0)


def _scatter_add(canvas: np.ndarray, owner: np.ndarray, w: dict[str, np.ndarray], s: int, t: int, k: float) -> None:
    """Add the blobs of triplets s..t-1 with ``np.add.at`` (repeated indices applied one after
    another, in order). Windows are padded to the run's largest; the padding lands in the
    canvas's spare row and column, never read."""
    nr, nc = int(w["nrows"][s:t].max()), int(w["ncols"][s:t].max())
    if nr == 0 or nc == 0:
        return
    r = np.arange(nr)
    rows = w["row0"][s:t, None] + r
    cols = (w["col0"][s:t, None] + np.arange(nc)) % COLS
    blobs = _kernels(w, slice(s, t), rows, cols, k)
    blobs *= w["e"][s:t, None, None]  # the reference's `blob *= e`
    row_at = np.where(r >= w["nrows"][s:t, None], ROWS, rows)
    col_at = np.where(np.arange(nc) >= w["ncols"][s:t, None], COLS, cols)
    base = owner[s:t, None] * _CANVAS + row_at * _STRIDE_COLS
    np.add.at(canvas.reshape(-1), (base[:, :, None] + col_at[:, None, :]).ravel(), blobs.ravel())


def _add_blobs(canvas: np.ndarray, pts: np.ndarray, owner: np.ndarray, sigma: float) -> None:
    """Add the blob of every triplet of ``pts`` (N, 3) to ``canvas`` ((owners, ROWS + 1, COLS + 1)
    float32), in triplet order, so every map pixel sees exactly its own blobs' values in file
    order."""
    _, k = kernel_constants(sigma)
    w = triplet_windows(pts, sigma)
    for how, s, t in _plan(owner, w, _ELEMENT_BUDGET):
        (_slide_add if how == "slide" else _scatter_add)(canvas, owner, w, s, t, k)


def render_energies(annotations: Sequence, sigma: float = 6.0) -> Iterator[np.ndarray]:
    """The energy maps (180 x 360 float32) of many annotations (each a sequence of polygons),
    in order; equal bit for bit to :func:`render_energy_reference` of each."""
    annotations = list(annotations)
    for first in range(0, len(annotations), _CANVAS_BUDGET):
        chunk = annotations[first : first + _CANVAS_BUDGET]
        polys = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for polygons in chunk for p in polygons]
        counts = np.array([sum(np.asarray(p).size // 3 for p in polygons) for polygons in chunk], dtype=np.int64)
        canvas = np.zeros((len(chunk), _STRIDE_ROWS, _STRIDE_COLS), dtype=np.float32)
        if counts.sum():
            owner = np.repeat(np.arange(len(chunk), dtype=np.int64), counts)
            _add_blobs(canvas, np.concatenate(polys), owner, sigma)
        for m in canvas:
            yield np.ascontiguousarray(m[:ROWS, :COLS])


def render_energy(polygons, sigma: float = 6.0) -> np.ndarray:
    """The energy map of one annotation (:func:`render_energies` of one)."""
    return next(render_energies([polygons], sigma))
