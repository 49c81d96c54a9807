"""Input errors that name the file and the record, so users can fix their data."""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input. ``str()`` names the file and, where known, the annotation (record) index."""

    def __init__(self, path, message: str, record: int | None = None, detail: str | None = None,
                 what: str = "annotation"):
        self.path = str(path)
        self.record = record
        self.detail = detail
        where = self.path if record is None else f"{self.path}: {what} {record}"
        super().__init__(f"{where}: {message}" + (f" ({detail})" if detail else ""))
