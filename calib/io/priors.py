"""Class priors per clip and window (e.g. an AudioMAE-style recognition model over 2-s windows).

A CSV or Parquet file with columns ``clip, start_frame, end_frame, p_0 .. p_12`` (probabilities;
``end_frame`` exclusive). Frames are the label frames (10 per second).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from calib.constants import N_CLASSES, sha256_file
from calib.io.clipnames import check_clip_name, is_safe_clip_name
from calib.io.errors import InputError
from calib.tables import PRIORS, conform

PROB_COLUMNS = [f"p_{k}" for k in range(N_CLASSES)]


def read_priors(path: str | os.PathLike) -> tuple[pl.DataFrame, dict]:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    try:
        df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema_length=10000)
    except Exception as e:  # polars raises several kinds for bad files
        raise InputError(path, f"cannot read priors table: {e}") from None
    missing = [c for c in PRIORS if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing}; expected clip, start_frame, end_frame, p_0..p_12")
    df = conform(df.with_columns(pl.col("clip").cast(pl.String)), "priors", where=str(path)).select(list(PRIORS))
    bad = [c for c in df.get_column("clip").unique().to_list() if not is_safe_clip_name(c)]
    if bad:  # the first row holding an unsafe clip name
        row = int(df.with_row_index("_row").filter(pl.col("clip").is_in(bad)).get_column("_row")[0])
        check_clip_name(df.get_column("clip")[row], str(path), record=row, what="row")
    probs = df.select(PROB_COLUMNS).to_numpy()
    bad = np.flatnonzero(~(np.isfinite(probs) & (probs >= 0) & (probs <= 1)).all(axis=1))
    if bad.size:
        raise InputError(path, "probabilities must be finite and in [0, 1]", record=int(bad[0]), what="row")
    s, e = df.get_column("start_frame").to_numpy(), df.get_column("end_frame").to_numpy()
    bad = np.flatnonzero((s < 0) | (e <= s))
    if bad.size:
        raise InputError(path, f"window [{s[bad[0]]}, {e[bad[0]]}) is empty or negative", record=int(bad[0]), what="row")
    return df, {str(path): sha256_file(path)}


def priors_per_frame(priors: pl.DataFrame) -> pl.DataFrame:
    """Long form (clip, frame, class_id, prior): every frame of every window, each class."""
    frames = priors.with_columns(pl.int_ranges("start_frame", "end_frame").alias("frame")).explode("frame")
    return (frames.unpivot(index=["clip", "frame"], on=PROB_COLUMNS, variable_name="cls", value_name="prior")
            .with_columns(pl.col("cls").str.strip_prefix("p_").cast(pl.Int64).alias("class_id"))
            .select("clip", pl.col("frame").cast(pl.Int64), "class_id", "prior")
            .unique(["clip", "frame", "class_id"], keep="last", maintain_order=True)
            .sort("clip", "frame", "class_id"))
