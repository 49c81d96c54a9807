"""IoU threshold lists: ``0.25,0.5`` or ``start:step:end`` (end included)."""
from __future__ import annotations

import math

DEFAULT_THRESHOLDS = {"dcase2026": (0.25, 0.5, 0.75)}


def parse_thresholds(spec: str | None, protocol: str = "dcase2026") -> list[float]:
    """Parse a threshold spec; None or "" gives the protocol's default.

    ``0.5:0.05:0.95`` -> [0.5, 0.55, ..., 0.95]: values are rounded to 10 decimals so that the
    range gives the same numbers as writing them out (0.6, not 0.6000000000000001)."""
    if spec is None or str(spec).strip() == "":
        if protocol not in DEFAULT_THRESHOLDS:
            raise ValueError(f"protocol {protocol!r} has fixed IoU thresholds")
        return list(DEFAULT_THRESHOLDS[protocol])
    spec = str(spec).strip()
    try:
        if ":" in spec:
            parts = [float(p) for p in spec.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, step, end = parts
            if not step > 0 or end < start:
                raise ValueError
            n = int(math.floor((end - start) / step + 1e-9)) + 1
            values = [round(start + i * step, 10) for i in range(n)]
        else:
            values = [float(p) for p in spec.split(",") if p.strip() != ""]
    except ValueError:
        raise ValueError(f"bad IoU threshold spec {spec!r}: use a list like 0.25,0.5 or a range start:step:end "
                         "like 0.5:0.05:0.95") from None
    if not values:
        raise ValueError(f"bad IoU threshold spec {spec!r}: no thresholds")
    bad = [v for v in values if not (0.0 < v <= 1.0) or math.isnan(v)]
    if bad:
        raise ValueError(f"IoU thresholds must lie in (0, 1], got {bad}")
    return values


def threshold_label(t: float) -> str:
    """Column suffix of a threshold: 0.25 -> '0.25', 0.5 -> '0.5'."""
    return f"{t:g}"
