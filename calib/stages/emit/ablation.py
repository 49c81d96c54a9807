"""Emitter ablation: the same detections emitted several ways, scored and sized side by side."""
from __future__ import annotations

import json
import time

import numpy as np
import polars as pl

from calib.io.dcase import dumps_clip
from calib.canvas.points import flatten
from calib.stages.base import Tables, make_stage

DEFAULT_EMITTERS = ("grid", "dense", "rowmajor", "compress", "hull")
ABLATION_SCHEMA = {"emitter": pl.String, "macro_mAP": pl.Float64, "rel_mAP": pl.Float64,
                   "macro_pearson_r": pl.Float64, "largest_MiB": pl.Float64, "mean_MiB": pl.Float64,
                   "points": pl.Int64, "emit_s": pl.Float64}


def parse_emitter(spec: str) -> dict:
    """``name`` or ``name:key=value:key=value`` -> a stage spec; values are JSON (else strings).

    ``none`` means the detections as they are."""
    name, *pairs = spec.strip().split(":")
    out: dict = {"type": name.strip()}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"emitter {spec!r}: expected key=value after ':', got {pair!r}")
        k, v = pair.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def clip_file_sizes(df: pl.DataFrame) -> np.ndarray:
    """Bytes of each clip's exported file (one system)."""
    if len(df) == 0:
        return np.zeros(0, np.int64)
    parts = df.sort(["clip", "det_id"], maintain_order=True).partition_by("clip", maintain_order=True)
    return np.array([len(dumps_clip(p, "pred")) for p in parts], np.int64)


def ablate(detections: pl.DataFrame, truth: pl.DataFrame, emitters, *, protocol: str = "dcase2026") -> pl.DataFrame:
    """One row per emitter (``none`` first: the detections as given): macro mAP, its change relative
    to ``none``, macro Pearson, largest and mean clip file size (MiB), total points, emission time.
    The emitters run over the workers of the enclosing :func:`calib.score.parallel.scale_out` block
    when they are worth a pool (else each one's scoring does, per clip); rows keep their order."""
    from calib.score.parallel import parallel_map, settings, use_pool

    specs = [{"type": "none"}] + [parse_emitter(e) if isinstance(e, str) else dict(e) for e in emitters
                                  if (e if isinstance(e, str) else e.get("type")) != "none"]
    par = settings().par()
    if not use_pool(len(specs), ABLATION_S_PER_DET * len(specs) * len(detections), jobs=par["jobs"],
                    backend=par["backend"]):
        par = {"jobs": 1, "backend": "loky", "scheduler": None}

    rows = parallel_map(_ablate_one, [(spec, detections, truth, protocol) for spec in specs], **par,
                        desc="emitters", unit="emitter")
    base = rows[0]["macro_mAP"]
    for r in rows:
        r["rel_mAP"] = (r["macro_mAP"] / base - 1.0) if base and r["macro_mAP"] is not None else None
    return pl.DataFrame(rows, schema=ABLATION_SCHEMA)


#: rough in-process seconds per detection and emitter (emission, scoring, sizing): a pool is
#: started only when the emitters add up to :data:`calib.score.parallel.POOL_MIN_SECONDS`
ABLATION_S_PER_DET = 1e-4


def _ablate_one(spec: dict, detections: pl.DataFrame, truth: pl.DataFrame, protocol: str) -> dict:
    """One emitter's row (``rel_mAP`` left out): emitted, scored, sized."""
    from calib.score.facade import score_against

    t0 = time.perf_counter()
    if spec["type"] == "none":
        out = detections
    else:
        out = make_stage(spec).apply(Tables(detections=detections))["detections"]
    emit_s = time.perf_counter() - t0
    res = score_against(out, truth, protocol=protocol)
    sizes = clip_file_sizes(out)
    label = spec["type"] + "".join(f":{k}={json.dumps(v)}" for k, v in spec.items() if k != "type")
    return {"emitter": label, "macro_mAP": res.headline, "macro_pearson_r": res.pearson,
            "largest_MiB": float(sizes.max() / 2**20) if sizes.size else 0.0,
            "mean_MiB": float(sizes.mean() / 2**20) if sizes.size else 0.0,
            "points": flatten(out.get_column("points")).n_points, "emit_s": emit_s}


#: below this baseline ('none') mAP, the table prints absolute mAP differences: a relative change
#: of a near-zero baseline reads as +2702615.5 % and says nothing
RELATIVE_FLOOR = 0.01


def format_table(df: pl.DataFrame) -> str:
    """The ablation as aligned text. The change column is relative to 'none' (``rel_mAP``), or the
    absolute mAP difference (``diff_mAP``) when 'none' scores under :data:`RELATIVE_FLOOR`."""
    base = df.get_column("macro_mAP")[0] if len(df) else None
    relative = base is not None and base == base and base >= RELATIVE_FLOOR
    change = "rel_mAP" if relative else "diff_mAP"
    head = (f"{'emitter':<34} {'macro_mAP':>9} {change:>8} {'pearson':>8} {'largest_MiB':>11} {'mean_MiB':>9} "
            f"{'points':>10}")
    lines = [head, "-" * len(head)]

    def f(v, fmt):
        width = int(fmt.lstrip("+").split(".")[0])
        return format(v, fmt) if v is not None and v == v else "-".rjust(width)

    for r in df.iter_rows(named=True):
        if relative:
            delta = f(r["rel_mAP"], "+8.1%")
        else:
            m = r["macro_mAP"]
            delta = f(None if m is None or base is None or base != base else m - base, "+8.4f")
        lines.append(f"{r['emitter']:<34} {f(r['macro_mAP'], '9.4f')} {delta} "
                     f"{f(r['macro_pearson_r'], '8.4f')} {f(r['largest_MiB'], '11.3f')} {f(r['mean_MiB'], '9.3f')} "
                     f"{r['points']:>10}")
    if relative:
        lines.append("rel_mAP: change of macro_mAP relative to 'none' (the detections as given)")
    else:
        lines.append(f"diff_mAP: macro_mAP minus that of 'none' (absolute: 'none' scores under {RELATIVE_FLOOR:g}, "
                     "where a relative change means nothing)")
    return "\n".join(lines)
