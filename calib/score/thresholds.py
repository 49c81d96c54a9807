"""The dcase2026 protocol's soft-IoU thresholds, parsed and validated in one place.

Every way thresholds arrive goes through :func:`parse_thresholds`: ``calib score --iou-thresholds``,
a recipe's ``[scoring] iou_thresholds`` (checked when the recipe is loaded, see
:class:`calib.recipe.schema.Scoring`), the gate's scoring table and :func:`calib.score.score` itself.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from calib.constants import PROTOCOLS

#: why thresholds and the coco protocol do not go together
COCO_FIXED = "the dcase2026-coco protocol uses pycocotools' fixed IoU thresholds 0.50:0.05:0.95"


def _number(v, spec) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"IoU thresholds {spec!r}: {v!r} is not a number")
    return float(v)


def _in_range(vals: list[float], spec) -> list[float]:
    if not vals:
        raise ValueError(f"IoU thresholds {spec!r}: expected at least one threshold")
    bad = [v for v in vals if not (0 < v <= 1)]  # NaN fails too
    if bad:
        raise ValueError(f"IoU thresholds {spec!r}: expected numbers in (0, 1], got {bad[0]!r}")
    return vals


def parse_thresholds(spec: str | Sequence[float] | None, protocol: str = "dcase2026") -> list[float] | None:
    """``"0.25,0.5"`` or ``"0.5:0.05:0.95"`` (start:step:end, end included) or a list of numbers ->
    floats in (0, 1]; None (the protocol's default) -> None. Any other form, a value outside (0, 1],
    a range with step <= 0 or end < start, and thresholds with the dcase2026-coco protocol (whose
    thresholds are fixed) are a ValueError saying what is wrong."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if spec is None:
        return None
    if protocol == "dcase2026-coco":
        raise ValueError(COCO_FIXED)
    if not isinstance(spec, str):
        if isinstance(spec, (bytes, dict)) or not isinstance(spec, Sequence | np.ndarray):
            raise ValueError(f"IoU thresholds {spec!r}: expected a list of numbers or a string such as "
                             "'0.25,0.5' or '0.5:0.05:0.95'")
        return _in_range([_number(v, spec) for v in spec], spec)
    text = spec.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError(f"IoU thresholds {spec!r}: expected start:step:end")
            start, step, end = (float(p) for p in parts)
        else:
            vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as e:
        if str(e).startswith("IoU thresholds"):
            raise
        raise ValueError(f"IoU thresholds {spec!r}: expected numbers such as '0.25,0.5' or start:step:end "
                         "such as '0.5:0.05:0.95'") from None
    if ":" in text:
        if not step > 0 or not end >= start:
            raise ValueError(f"IoU thresholds {spec!r}: need step > 0 and end >= start")
        n = int(math.floor((end - start) / step + 1e-9)) + 1
        # rounded so 0.5:0.05:0.95 gives 0.9, not 0.8999999999999999 (as the official script prints)
        vals = [round(float(v), 10) for v in np.linspace(start, start + step * (n - 1), n)]
    return _in_range(vals, spec)
