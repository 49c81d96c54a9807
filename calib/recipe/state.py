"""Learned state of stages on disk, in formats that cannot run code when read.

A fitted stage's learned attributes (public names ending in ``_``) are written to a folder:

- ``state.json``: format, version, the stage type and every attribute as JSON. A value JSON has no
  form for is a tagged object: ``{"$float": "nan"}`` (also ``"inf"``, ``"-inf"``),
  ``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}`` (a dict whose keys are not all plain
  strings: class ids, say), ``{"$array": "a0"}`` (an entry of ``arrays.npz``; ``"scalar": true``
  for a numpy scalar other than a bool, integer or float, which are stored as the equal Python
  number), ``{"$frame": "frame-0.parquet"}`` / ``{"$series": ...}`` (polars), and
  ``{"$model": "RerankModel", "folder": "model-0"}`` (a reranker model folder: LightGBM text or
  JSON trees plus ``reranker.json``, as :meth:`calib.rerank.pipeline.RerankModel.save` writes it),
  and ``{"$stage": "cap", "params": {...}, "folder": "stage-0"}`` (a fitted stage held by another,
  as a gated stage holds the stage it wraps: its registered type, its parameters, and its own
  learned state in the folder ``stage-0/``, in this same format, nested).
- ``arrays.npz`` (numpy arrays, read back with ``allow_pickle=False``), ``frame-<n>.parquet``,
  ``model-<n>/``, ``stage-<n>/``.

Reading unpickles nothing and imports nothing a file names: the tags come from a closed list,
file references must be the names the writer uses (no paths), a nested stage's type must be a
registered stage (the registry is the closed list; nothing is imported by name), attribute names must end in ``_``,
and where the stage declares ``learned_attributes`` the names and types must match. Anything else
is a :class:`StateError` naming the file and the attribute. Writing is deterministic (same state,
same bytes) and round trips losslessly.
"""
from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import polars as pl

from calib.io.errors import InputError

FORMAT = "calib-stage-state"
VERSION = 1
STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9_]*_")
_ARRAY = re.compile(r"a[0-9]+")
_FRAME = re.compile(r"frame-[0-9]+\.parquet")
_MODEL = re.compile(r"model-[0-9]+")
_STAGE = re.compile(r"stage-[0-9]+")
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_TAG_KEYS = {"$float": {"$float"}, "$tuple": {"$tuple"}, "$dict": {"$dict"}, "$array": {"$array", "scalar"},
             "$frame": {"$frame"}, "$series": {"$series"}, "$model": {"$model", "folder"},
             "$stage": {"$stage", "params", "folder"}}


class StateError(InputError):
    """Learned state that cannot be read back: a damaged, tampered or foreign state folder."""


def model_kinds() -> dict[str, type]:
    """The objects stored as model folders, by the name ``state.json`` gives them: a closed list
    (a name read from a file selects among these; it never names code to import)."""
    from calib.rerank.pipeline import RerankModel

    return {"RerankModel": RerankModel}


def learned_state(stage) -> dict[str, Any]:
    """The attributes ``fit`` learned (public names ending in ``_``)."""
    return {k: v for k, v in vars(stage).items() if k.endswith("_") and not k.startswith("_")}


# ----------------------------------------------------------------------------------------------
class _Writer:
    def __init__(self, folder: Path):
        self.folder = folder
        self.arrays: dict[str, np.ndarray] = {}
        self.files = 0
        self.models = 0
        self.stages = 0

    def encode(self, v: Any, where: str) -> Any:
        if isinstance(v, (np.bool_, np.integer, np.floating)):
            v = v.item()  # numpy scalars are stored as the equal Python number: readable JSON
        if v is None or isinstance(v, (bool, str)):
            return v if not isinstance(v, str) else str(v)
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            if math.isfinite(v):
                return float(v)
            return {"$float": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
        if isinstance(v, (np.ndarray, np.generic)):
            arr = np.asarray(v)
            if arr.dtype.hasobject:
                raise TypeError(f"{where}: a numpy array of Python objects cannot be stored without pickling; "
                                "use a numeric or string dtype")
            key = f"a{len(self.arrays)}"
            self.arrays[key] = arr
            return {"$array": key, "scalar": True} if isinstance(v, np.generic) else {"$array": key}
        if isinstance(v, (pl.DataFrame, pl.Series)):
            name = f"frame-{self.files}.parquet"
            self.files += 1
            (v if isinstance(v, pl.DataFrame) else v.to_frame()).write_parquet(self.folder / name)
            return {"$frame" if isinstance(v, pl.DataFrame) else "$series": name}
        if isinstance(v, list):
            return [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, tuple):
            return {"$tuple": [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in v):
                return {k: self.encode(x, f"{where}.{k}") for k, x in v.items()}
            return {"$dict": [[self.encode(k, f"{where} key {k!r}"), self.encode(x, f"{where}[{k!r}]")]
                              for k, x in v.items()]}
        from calib.stages.base import Stage

        if isinstance(v, Stage):
            name = f"stage-{self.stages}"
            self.stages += 1
            write_state(learned_state(v), self.folder / name, stage_type=v.name)
            return {"$stage": v.name, "params": self.encode(v.get_params(), f"{where}.params"), "folder": name}
        for kind, cls in model_kinds().items():
            if isinstance(v, cls):
                name = f"model-{self.models}"
                self.models += 1
                v.save(self.folder / name)
                return {"$model": kind, "folder": name}
        raise TypeError(f"{where}: cannot store a {type(v).__name__} as learned state (no pickling); use numbers, "
                        "strings, lists, dicts, numpy arrays, polars DataFrames, a reranker model or a stage")

    def write_arrays(self) -> None:
        if not self.arrays:
            return
        # np.savez stamps each entry with the current time; fixed timestamps keep the bytes stable
        with zipfile.ZipFile(self.folder / ARRAYS_FILE, "w", compression=zipfile.ZIP_STORED) as zf:
            for key, arr in self.arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE)
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, arr, allow_pickle=False)


def write_state(state: Mapping[str, Any], folder: str | Path, *, stage_type: str) -> Path:
    """Write learned attributes to a new folder ``folder`` (see the module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    writer = _Writer(folder)
    attributes = {}
    for name, value in state.items():
        if not _ATTRIBUTE.fullmatch(name):
            raise ValueError(f"learned attribute {name!r} of stage {stage_type!r}: names end in '_'")
        attributes[name] = writer.encode(value, f"{stage_type}.{name}")
    writer.write_arrays()
    doc = {"format": FORMAT, "version": VERSION, "stage": stage_type, "attributes": attributes}
    (folder / STATE_FILE).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return folder


def save_state(stage, folder: str | Path) -> Path:
    """Write ``stage``'s learned attributes to the new folder ``folder``."""
    return write_state(learned_state(stage), folder, stage_type=stage.name)


# ----------------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, folder: Path, hint: str):
        self.folder = folder
        self.path = folder / STATE_FILE
        self.hint = hint
        self._arrays = None

    def fail(self, where: str, message: str) -> StateError:
        return StateError(self.path, f"{where}: {message}" + (f" ({self.hint})" if self.hint else ""))

    def _file(self, name: Any, pattern: re.Pattern, where: str) -> Path:
        if not isinstance(name, str) or not pattern.fullmatch(name):
            raise self.fail(where, f"{name!r} is not a file name this format uses")
        path = self.folder / name
        if not path.exists():
            raise self.fail(where, f"{name} is missing")
        return path

    def array(self, key: Any, where: str) -> np.ndarray:
        if not isinstance(key, str) or not _ARRAY.fullmatch(key):
            raise self.fail(where, f"{key!r} is not an array name this format uses")
        if self._arrays is None:
            path = self._file(ARRAYS_FILE, re.compile(re.escape(ARRAYS_FILE)), where)
            try:
                with np.load(path, allow_pickle=False) as z:
                    self._arrays = {k: z[k] for k in z.files}
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                raise self.fail(where, f"{ARRAYS_FILE} cannot be read ({e})") from None
        if key not in self._arrays:
            raise self.fail(where, f"no array {key} in {ARRAYS_FILE}")
        return self._arrays[key]

    def decode(self, v: Any, where: str) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.decode(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if not isinstance(v, dict):
            raise self.fail(where, f"unexpected JSON value {v!r}")
        tags = [k for k in v if k.startswith("$")]
        if not tags:
            return {k: self.decode(x, f"{where}.{k}") for k, x in v.items()}
        tag = tags[0]
        if len(tags) > 1 or tag not in _TAG_KEYS or not set(v) <= _TAG_KEYS[tag]:
            raise self.fail(where, f"unknown tagged value {sorted(v)}; known tags: {', '.join(_TAG_KEYS)}")
        body = v[tag]
        if tag == "$float":
            if body not in _FLOATS:
                raise self.fail(where, f"$float must be one of {list(_FLOATS)}, got {body!r}")
            return _FLOATS[body]
        if tag == "$tuple":
            if not isinstance(body, list):
                raise self.fail(where, "$tuple must hold a list")
            return tuple(self.decode(x, f"{where}[{i}]") for i, x in enumerate(body))
        if tag == "$dict":
            if not isinstance(body, list) or not all(isinstance(p, list) and len(p) == 2 for p in body):
                raise self.fail(where, "$dict must hold a list of [key, value] pairs")
            out = {}
            for i, (k, x) in enumerate(body):
                key = self.decode(k, f"{where} key {i}")
                try:
                    hash(key)
                except TypeError:
                    raise self.fail(where, f"key {i} ({key!r}) cannot be a dict key") from None
                out[key] = self.decode(x, f"{where}[{key!r}]")
            return out
        if tag == "$array":
            arr = self.array(body, where)
            scalar = v.get("scalar", False)
            if not isinstance(scalar, bool) or (scalar and arr.ndim != 0):
                raise self.fail(where, "'scalar' must be true only for a 0-d array")
            return arr[()] if scalar else arr
        if tag in ("$frame", "$series"):
            path = self._file(body, _FRAME, where)
            try:
                df = pl.read_parquet(path)
            except Exception as e:  # polars raises several kinds for a damaged file
                raise self.fail(where, f"{body} cannot be read ({type(e).__name__}: {e})") from None
            if tag == "$series":
                if df.width != 1:
                    raise self.fail(where, f"{body} must hold one column for a series, has {df.width}")
                return df.to_series(0)
            return df
        if tag == "$stage":
            return self.stage(body, v, where)
        # "$model": a kind from the closed list, a folder this format names
        kinds = model_kinds()
        if body not in kinds:
            raise self.fail(where, f"unknown model kind {body!r}; known: {', '.join(kinds)}")
        folder = self._file(v.get("folder"), _MODEL, where)
        from features import FeatureError
        from calib.rerank.pipeline import ModelMismatchError

        try:
            return kinds[body].load(folder)
        except (ModelMismatchError, FeatureError, OSError, ValueError, KeyError, TypeError) as e:
            raise self.fail(where, f"the {body} in {folder.name}/ cannot be loaded: {e}") from None

    def stage(self, body: Any, v: dict, where: str):
        """A nested fitted stage: a registered type built with its stored parameters, then its own
        learned state read from its folder (checked as any stage's)."""
        from calib.stages.base import UnknownStageError, make_stage

        if not isinstance(body, str):
            raise self.fail(where, f"$stage must name a registered stage type, got {body!r}")
        folder = self._file(v.get("folder"), _STAGE, where)
        params = self.decode(v.get("params", {}), f"{where}.params")
        if not isinstance(params, dict) or "type" in params:
            raise self.fail(where, "a nested stage's params must be a table of its parameters")
        try:
            stage = make_stage({"type": body, **params})
        except UnknownStageError as e:
            raise self.fail(where, str(e)) from None
        except (ValueError, TypeError) as e:
            raise self.fail(where, f"the {body!r} stage rejects its stored parameters: {e}") from None
        return load_state(stage, folder, hint=self.hint)


def read_state(folder: str | Path, *, stage_type: str | None = None,
               declared: Mapping[str, Any] | None = None, hint: str = "") -> dict[str, Any]:
    """The learned attributes stored in ``folder``, checked: the stage type (when given) and, when
    ``declared`` (a stage's ``learned_attributes``) is not empty, the attribute names and types.
    ``hint`` is added to every error (what the user can do about it)."""
    reader = _Reader(Path(folder), hint)
    if not reader.path.is_file():
        raise reader.fail("state", f"no {STATE_FILE} in {folder}")
    try:
        doc = json.loads(reader.path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise reader.fail("state", f"not valid JSON ({e})") from None
    if not isinstance(doc, dict) or set(doc) != {"format", "version", "stage", "attributes"}:
        raise reader.fail("state", "expected an object with format, version, stage and attributes")
    if doc["format"] != FORMAT or doc["version"] != VERSION:
        raise reader.fail("state", f"format {doc['format']!r} version {doc['version']!r}; this calib reads "
                          f"{FORMAT!r} version {VERSION}")
    if stage_type is not None and doc["stage"] != stage_type:
        raise reader.fail("stage", f"holds the state of a {doc['stage']!r} stage, not of {stage_type!r}")
    attributes = doc["attributes"]
    if not isinstance(attributes, dict):
        raise reader.fail("attributes", "expected an object of learned attributes")
    for name in attributes:
        if not _ATTRIBUTE.fullmatch(name):
            raise reader.fail(f"attributes.{name}", "not a learned attribute name (letters, digits, '_', ending in '_')")
    if declared:
        missing, extra = sorted(set(declared) - set(attributes)), sorted(set(attributes) - set(declared))
        if missing or extra:
            raise reader.fail("attributes", f"stage {doc['stage']!r} learns {sorted(declared)}; missing {missing}, "
                              f"unexpected {extra}")
    state = {}
    for name, value in attributes.items():
        try:
            state[name] = reader.decode(value, f"attributes.{name}")
        except RecursionError:
            raise reader.fail(f"attributes.{name}", "nested too deeply") from None
        want = (declared or {}).get(name)
        if want is not None and not _is_kind(state[name], want):
            raise reader.fail(f"attributes.{name}", f"expected {_kind_name(want)}, got {type(state[name]).__name__}")
    return state


def _is_kind(value: Any, want: Any) -> bool:
    if isinstance(want, str):
        return isinstance(value, model_kinds()[want])
    return isinstance(value, want)


def _kind_name(want: Any) -> str:
    if isinstance(want, str):
        return want
    if isinstance(want, tuple):
        return " or ".join(t.__name__ for t in want)
    return want.__name__


def load_state(stage, folder: str | Path, *, hint: str = ""):
    """Restore onto ``stage`` the learned state stored in ``folder`` (checked as :func:`read_state`)."""
    state = read_state(folder, stage_type=stage.name, declared=getattr(type(stage), "learned_attributes", None),
                       hint=hint)
    for k, v in state.items():
        setattr(stage, k, v)
    return stage
