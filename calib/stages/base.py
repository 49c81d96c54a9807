"""Stages: small table -> table components with a scikit-learn-like contract.

A stage stores its parameters in ``__init__`` (nothing computed there), optionally learns state in
``fit(tables)`` (attributes ending in ``_``), and returns new tables from ``apply(tables)``, never
mutating its input. ``tables`` is a :class:`Tables` mapping of named polars DataFrames:
``detections`` (required by most stages), ``truth``, ``teacher``, ``priors`` and any named extra
systems (``systems`` for multi-system stages: a dict name -> detections table).

Each stage class is registered under a name with :func:`register`; a recipe refers to it by that
name (``type = "cap"``) plus its parameters. One conformance suite (tests/stages/test_conformance.py)
runs over every registered stage.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import polars as pl

_REGISTRY: dict[str, type["Stage"]] = {}


class UnknownStageError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return self.args[0]


def register(name: str):
    """Class decorator: register a stage under ``name`` (its recipe ``type``)."""

    def deco(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"stage name {name!r} already registered by {_REGISTRY[name].__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtin_stages() -> None:
    # Importing the package registers the built-in stages (each module calls @register).
    import calib.stages  # noqa: F401
    import importlib
    import pkgutil

    for mod in pkgutil.walk_packages(calib.stages.__path__, prefix="calib.stages."):
        if mod.name != "calib.stages.base":
            importlib.import_module(mod.name)


def registry() -> dict[str, type["Stage"]]:
    _load_builtin_stages()
    return dict(sorted(_REGISTRY.items()))


def get_stage(name: str) -> type["Stage"]:
    reg = registry()
    if name not in reg:
        raise UnknownStageError(f"unknown stage {name!r}; known stages: {', '.join(reg)}")
    return reg[name]


def make_stage(spec: Mapping[str, Any]) -> "Stage":
    """Build a stage from a recipe entry ``{"type": name, **params}``; unknown params are errors."""
    spec = dict(spec)
    if "type" not in spec:
        raise ValueError(f"stage entry {spec!r} has no 'type'")
    cls = get_stage(spec.pop("type"))
    allowed = cls.param_names()
    unknown = [k for k in spec if k not in allowed]
    if unknown:
        raise ValueError(f"stage {cls.name!r}: unknown parameter(s) {unknown}; it takes {allowed}")
    return cls(**spec)


class Tables(dict):
    """Named tables flowing between stages. A plain dict with a helpful error for a missing name."""

    def __missing__(self, key):
        raise KeyError(f"this stage needs a {key!r} table, which the inputs do not provide (have: {sorted(self)})")

    def replace(self, **tables) -> "Tables":
        new = Tables(self)
        new.update(tables)
        return new


class Stage:
    """Base class. Subclasses define ``__init__`` with keyword parameters stored as attributes."""

    name: ClassVar[str] = ""
    #: names of tables this stage reads (``detections``, ``truth``, ``teacher``, ``priors``, ``systems``)
    needs_tables: ClassVar[tuple[str, ...]] = ("detections",)
    #: columns of ``detections`` it reads and adds (documentation and conformance checks)
    needs_columns: ClassVar[tuple[str, ...]] = ()
    adds_columns: ClassVar[tuple[str, ...]] = ()
    #: True when fit learns something (then apply requires a prior fit)
    learns: ClassVar[bool] = False
    #: what fit learns: attribute (ending in ``_``) -> its type, or the name of a model kind the
    #: state codec stores as a folder ("RerankModel"); checked when the state is read back
    #: (:mod:`calib.recipe.state`). Empty: any attributes ending in ``_``.
    learned_attributes: ClassVar[Mapping[str, Any]] = {}
    #: parameters naming files or folders whose contents the output depends on (their contents
    #: are part of the stage cache key)
    path_params: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.KEYWORD_ONLY
                or (p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD)]

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {p.name: p.default for p in sig.parameters.values() if p.name != "self"}

    def get_params(self) -> dict[str, Any]:
        return {k: copy.deepcopy(getattr(self, k)) for k in self.param_names()}

    def set_params(self, **params) -> "Stage":
        for k, v in params.items():
            if k not in self.param_names():
                raise ValueError(f"stage {self.name!r} has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.name, **self.get_params()}

    def clone(self) -> "Stage":
        return type(self)(**self.get_params())

    def code_modules(self) -> list[str]:
        """Modules this stage imports because its parameters name them: they must be allowed
        (``--allow-import``) and their source is part of the stage cache key."""
        return []

    def fit(self, tables: Tables) -> "Stage":
        return self

    def apply(self, tables: Tables) -> Tables:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_apply(self, tables: Tables) -> Tables:
        return self.fit(tables).apply(tables)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def summary(cls: type[Stage]) -> str:
    """The first paragraph of the class docstring on one line: its summary sentence, however many
    source lines it spans."""
    first = (inspect.getdoc(cls) or "").strip().split("\n\n")[0]
    return " ".join(first.split())


def describe(cls: type[Stage]) -> str:
    """The stage's summary plus its parameters with defaults (for ``calib stages``)."""
    params = ", ".join(f"{k}={v!r}" for k, v in cls.param_defaults().items())
    return f"{cls.name}: {summary(cls)}\n    params: {params or '(none)'}"
