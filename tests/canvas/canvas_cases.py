"""Shared test data of the canvas tests."""
from __future__ import annotations

import numpy as np

#: where the random detections sit: over the seam, at both poles, and in between
PLACES = [(355.0, 60.0), (2.0, 1.0), (200.0, 178.0), (90.0, 90.0)]


def scattered_detections(rng: np.random.Generator, n: int, sizes: list[int]) -> list[list[np.ndarray]]:
    """``n`` one-polygon detections of ``sizes[k % len(sizes)]`` points (x, y, e) around
    :data:`PLACES` in turn; every third on whole degrees (many equally near pixels), the others
    anywhere within 9 degrees."""
    dets = []
    for k in range(n):
        x0, y0 = PLACES[k % 4]
        m = sizes[k % len(sizes)]
        if k % 3 == 0:
            pts = np.column_stack([(x0 + rng.integers(-6, 7, m)) % 360, np.clip(y0 + rng.integers(-6, 7, m), 0, 180),
                                   rng.integers(1, 4, m).astype(float)])
        else:
            pts = np.column_stack([(x0 + rng.uniform(-9, 9, m)) % 360, np.clip(y0 + rng.uniform(-9, 9, m), 0, 180),
                                   rng.random(m) + 0.1])
        dets.append([pts])
    return dets
