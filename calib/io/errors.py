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

    def __reduce__(self):
        # An exception pickles as cls(*args), which our constructors do not take; errors raised
        # in scoring workers (other processes) must come back whole.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls, args, state):
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InputWarning(UserWarning):
    """Input calib reads the way the official scorers do (e.g. skips) but the user should know of.

    The message names the file and the first record concerned."""
