"""What reading inputs gives back: the table, its sources, every clip read, and notes for the user.

:func:`ingest` is what ``calib ingest`` runs: one entry point for the four input kinds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import polars as pl

KINDS = ("detections", "truth", "teacher", "priors")


@dataclass
class Ingested:
    """One ingested input.

    ``table``: the rows; ``sources``: ``{file: sha256}`` of what was read; ``clips``: every clip
    read, ``{clip: split}``, including clips whose file holds no row (a polars frame cannot carry
    them: pass them on to :func:`calib.tables.write_table`); ``notes``: what the user should know
    (the layout a CSV was read as, repeated GT objects kept)."""

    table: pl.DataFrame
    sources: dict[str, str]
    clips: dict[str, str]
    notes: list[str] = field(default_factory=list)


def ingest(paths: Sequence[str | os.PathLike], kind: str = "detections", *, system: str | None = None,
           drop_unknown_classes: bool = False, seld_format: str = "auto", progress: bool | None = None) -> Ingested:
    """Read ``paths`` as one ``kind`` of input (see ``calib ingest --help``)."""
    if kind == "detections":
        from calib.io.dcase import read_predictions

        return read_predictions(paths, system, drop_unknown_classes=drop_unknown_classes, progress=progress)
    if kind == "truth":
        from calib.io.dcase import read_truth

        if len(paths) != 1:
            raise ValueError("ground truth is read from one folder")
        return read_truth(paths[0], drop_unknown_classes=drop_unknown_classes, progress=progress)
    if kind == "teacher":
        from calib.io.seld import read_teachers

        return read_teachers(paths, fmt=seld_format)
    if kind == "priors":
        from calib.io.priors import read_priors

        if len(paths) != 1:
            raise ValueError("priors are read from one file")
        df, sources = read_priors(paths[0])
        return Ingested(df, sources, {c: "" for c in df.get_column("clip").unique().sort().to_list()})
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
