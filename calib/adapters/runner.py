"""Run an adapter end to end: find it, load the checkpoint, collect its rows, check and write the table."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import polars as pl

from calib.adapters.base import AdapterError, input_files
from calib.adapters.registry import get_adapter
from calib.constants import sha256_file
from calib.tables import conform, empty, write_table

SORT_KEYS = {"detections": ("clip", "frame", "det_id"), "teacher": ("clip", "frame", "view", "class_id", "track"),
             "priors": ("clip", "start_frame")}


@dataclass
class AdaptResult:
    table: pl.DataFrame
    kind: str
    adapter: str
    params: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)  # file -> sha256


def adapt(name: str, checkpoint: str | os.PathLike, inputs: Sequence[str | os.PathLike], *, device: str | None = None,
          batch_size: int = 8, params: dict[str, Any] | None = None, progress: bool = False) -> AdaptResult:
    """Run adapter ``name`` with ``params`` on ``inputs`` (files or folders) and return its checked table.

    Rows are sorted by the table's natural key (stable), so the result does not depend on batching."""
    cls = get_adapter(name)
    adapter = cls(**(params or {}))
    files = input_files(inputs, tuple(getattr(cls, "input_suffixes", ()) or ()))
    adapter.load(checkpoint, device)
    kind = cls.kind
    parts = [conform(part, kind, where=f"adapter {name!r} output") for part in adapter.run(files, batch_size=batch_size,
                                                                                           progress=progress)]
    parts = [p for p in parts if len(p)]
    table = pl.concat(parts, how="diagonal_relaxed") if parts else empty(kind)
    keys = [k for k in SORT_KEYS[kind] if k in table.columns]
    table = conform(table.sort(keys, maintain_order=True), kind, where=f"adapter {name!r} output")
    sources = {str(f): sha256_file(f) for f in [Path(checkpoint), *files]}
    get_params = getattr(adapter, "get_params", None)
    used = get_params() if callable(get_params) else dict(params or {})
    return AdaptResult(table, kind, name, used, sources)


def write_result(result: AdaptResult, out: str | os.PathLike) -> Path:
    """Write atomically; the metadata records the adapter, its parameters and the hashed sources."""
    try:
        return write_table(result.table, out, result.kind, sources=result.sources, adapter=result.adapter,
                           adapter_params=result.params)
    except TypeError as e:  # parameters that are not JSON values
        raise AdapterError(f"adapter parameters must be JSON values: {e}") from None
