"""What reading inputs gives back: the table, its sources, every clip read, and notes for the user."""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


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
