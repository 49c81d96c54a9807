"""The adapter protocol: a named class that turns a model checkpoint and input files into table rows.

An adapter is constructed with its parameters (only stored, as in a stage), then
``load(checkpoint_path, device)`` builds the model and ``run(inputs, batch_size=..., progress=...)``
yields polars DataFrames of rows of the adapter's table ``kind`` ("detections", "teacher" or
"priors"), batch by batch. The runner (:func:`calib.adapters.runner.adapt`) concatenates them,
checks the schema and writes the table. This module imports no torch, so ``import calib`` and
``calib adapt --list`` work without it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import polars as pl

from calib.io.errors import InputError
from calib.tables import KINDS


class AdapterError(ValueError):
    """An adapter cannot be found, configured or run; the message says what to change."""


class Adapter:
    """Base class of adapters (subclassing is optional: the runner only needs ``kind``, ``load`` and ``run``).

    Subclasses set the class attributes below and implement :meth:`load` and :meth:`run`.
    ``defaults`` maps each parameter to its default; the parameters of the base classes are merged
    in, so a subclass lists only its own.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # the table kind run() yields: detections | teacher | priors
    description: ClassVar[str] = ""
    input_help: ClassVar[str] = ""  # what --input takes
    input_suffixes: ClassVar[tuple[str, ...]] = ()  # files a folder given as --input contributes
    defaults: ClassVar[dict[str, Any]] = {}
    param_help: ClassVar[dict[str, str]] = {}

    def __init__(self, **params: Any) -> None:
        known = self.all_defaults()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise AdapterError(f"adapter {self.name!r}: unknown parameter(s) {unknown}; known: {sorted(known)}")
        for key, value in (known | params).items():
            setattr(self, key, value)

    @classmethod
    def all_defaults(cls) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("defaults", {}))
        return merged

    @classmethod
    def all_param_help(cls) -> dict[str, str]:
        merged: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("param_help", {}))
        return merged

    def get_params(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.all_defaults()}

    def load(self, checkpoint_path: str | Path, device: str | None) -> "Adapter":
        raise NotImplementedError

    def run(self, inputs: Sequence[Path], *, batch_size: int = 8, progress: bool = False) -> Iterator[pl.DataFrame]:
        raise NotImplementedError


def check_adapter_class(obj: Any, name: str, target: str) -> None:
    """Raise AdapterError unless ``obj`` follows the protocol."""
    if not isinstance(obj, type):
        raise AdapterError(f"adapter {name!r} ({target}) is not a class")
    kind = getattr(obj, "kind", None)
    if kind not in KINDS or kind == "truth":
        raise AdapterError(f"adapter {name!r} ({target}): kind must be one of detections, teacher, priors; got {kind!r}")
    for method in ("load", "run"):
        if not callable(getattr(obj, method, None)):
            raise AdapterError(f"adapter {name!r} ({target}) has no {method}() method")


def input_files(inputs: Sequence[str | Path], suffixes: Sequence[str]) -> list[Path]:
    """Each given file, and every file with one of ``suffixes`` (any, if empty) in each given folder (sorted);
    clip names (file stems) must be unique."""
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                              and (not suffixes or f.suffix.lower() in suffixes)))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(p, "no such file or folder")
    if not out:
        raise InputError(", ".join(map(str, inputs)), f"no input files ({', '.join(suffixes) or 'any'})")
    stems: dict[str, Path] = {}
    for f in out:
        if f.stem in stems and stems[f.stem] != f:
            raise InputError(f, f"clip name {f.stem!r} also given by {stems[f.stem]}")
        stems[f.stem] = f
    return list(dict.fromkeys(out))
