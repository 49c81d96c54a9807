"""Reading inputs: :func:`ingest` is what ``calib ingest`` runs: one entry point for the four input kinds,
each giving an :class:`~calib.io.ingested.Ingested` (its readers import that, not this module).
"""
from __future__ import annotations

import os
from typing import Sequence

from calib.io.ingested import Ingested

KINDS = ("detections", "truth", "teacher", "priors")


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
