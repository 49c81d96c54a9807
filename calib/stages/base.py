"""Stages: small table -> table components with a scikit-learn-like contract.

A stage stores its parameters in ``__init__`` (nothing computed there), optionally learns state in
``fit(tables)`` (attributes ending in ``_``), and returns new tables from ``apply(tables)``, never
mutating its input. ``tables`` is a :class:`Tables` mapping of named polars DataFrames:
``detections`` (required by most stages), ``truth``, ``teacher``, ``priors`` and any named extra
systems (``systems`` for multi-system stages: a dict name -> detections table).

Each stage class is registered under a name with :func:`register` (or, from an installed package,
a ``calib.stages`` entry point: :mod:`calib.registry`); a recipe refers to it by that name
(``type = "cap"``) plus its parameters, which the class declares in ``PARAMS`` (:mod:`calib.params`)
so that recipes are validated at load and ``calib stages`` explains every parameter. One
conformance suite (tests/stages/test_conformance.py) runs over every registered stage.
"""
from __future__ import annotations

import inspect
from typing import Any, ClassVar, Mapping

import polars as pl

# stages import the declaration kit from here
from calib.params import REQUIRED, Declared, Param, ParamError, Rule, declare, problems  # noqa: F401
from calib.registry import Plugin, Registry

#: the entry-point group through which installed packages add stages
ENTRY_POINT_GROUP = "calib.stages"


class UnknownStageError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return self.args[0]


def _builtin_modules() -> list[str]:
    # every module of the calib.stages package (each registers its stages with @register)
    import pkgutil

    import calib.stages

    return [m.name for m in pkgutil.walk_packages(calib.stages.__path__, prefix="calib.stages.")
            if m.name != "calib.stages.base"]


def _prepare_plugin(cls, spec: Plugin) -> None:
    """A stage class named by a ``calib.stages`` entry point (``module:Class``): a declared Stage,
    registered under the entry point's name."""
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise UnknownStageError(f"stage {spec.name!r} ({spec.target}, from {spec.source}) is not a calib Stage class")
    check_declared(cls, spec.name)
    cls.name = spec.name


STAGES = Registry("stage", ENTRY_POINT_GROUP, modules=_builtin_modules, error=UnknownStageError, clash=ValueError,
                  check=_prepare_plugin)


def check_declared(cls: type, name: str) -> None:
    """A registered stage declares every parameter of its ``__init__`` in ``PARAMS`` with a
    meaning (``calib stages`` shows it, recipes are validated with it)."""
    sig = [p.name for p in inspect.signature(cls.__init__).parameters.values()
           if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if sig != list(cls.PARAMS):
        raise TypeError(f"stage {name!r} ({cls.__module__}.{cls.__qualname__}): __init__ takes {sig} but PARAMS "
                        f"declares {list(cls.PARAMS)}; declare every parameter with Param(type, default, meaning)")
    vague = [k for k, p in cls.PARAMS.items() if not p.meaning.strip()]
    if vague:
        raise TypeError(f"stage {name!r}: parameter(s) {vague} declared without a meaning")


def register(name: str):
    """Class decorator: register a stage under ``name`` (its recipe ``type``)."""

    def deco(cls):
        check_declared(cls, name)
        STAGES.add(name, cls)
        cls.name = name
        return cls

    return deco


def unregister(name: str) -> None:
    """Forget a stage (e.g. one a test registered); unknown names are ignored."""
    STAGES.remove(name)


def registry() -> dict[str, type["Stage"]]:
    """Every registered stage class by name, sorted (built-ins and installed ``calib.stages``
    entry points)."""
    return dict(sorted(STAGES.all().items()))


def get_stage(name: str) -> type["Stage"]:
    return STAGES.get(name)


def make_stage(spec: Mapping[str, Any]) -> "Stage":
    """Build a stage from a recipe entry ``{"type": name, **params}``; unknown parameters and
    values their declaration rejects are errors (:class:`~calib.params.ParamError`)."""
    spec = dict(spec)
    if "type" not in spec:
        raise ValueError(f"stage entry {spec!r} has no 'type'")
    cls = get_stage(spec.pop("type"))
    allowed = cls.param_names()
    unknown = [k for k in spec if k not in allowed]
    if unknown:
        raise ValueError(f"stage {cls.name!r}: unknown parameter(s) {unknown}; it takes {allowed}")
    found = problems(cls.PARAMS, spec)
    if found:
        raise ParamError(cls.name, *found[0])
    return cls(**spec)


class Tables(dict):
    """Named tables flowing between stages: a dict (``tables["detections"]``, ``tables.replace(...)``)
    with a helpful error for a missing name and typed accessors for the tables calib knows.

    ``systems`` is the one table that is not a DataFrame: the named input systems (name ->
    detections table) that multi-system stages read; :attr:`systems` is ``{}`` when there are none."""

    def __missing__(self, key):
        raise KeyError(f"this stage needs a {key!r} table, which the inputs do not provide (have: {sorted(self)})")

    def replace(self, **tables) -> "Tables":
        new = Tables(self)
        new.update(tables)
        return new

    def frames(self):
        """Every DataFrame held, the systems' tables included."""
        for value in self.values():
            yield from (value.values() if isinstance(value, dict) else [value])

    @property
    def detections(self) -> pl.DataFrame:
        """The working detections (a KeyError saying so when absent)."""
        return self["detections"]

    @property
    def truth(self) -> pl.DataFrame | None:
        return self.get("truth")

    @property
    def truth_clips(self) -> pl.DataFrame:
        """Every clip with ground truth and its GT split (``clip``, ``split``, sorted by clip): the
        ``truth_clips`` table the recipe inputs add (it lists GT files that hold no annotation,
        whose detections are all false positives) merged with the truth rows' clips. Empty when
        there is no ground truth."""
        parts = [t.select(pl.col("clip").cast(pl.String), pl.col("split").cast(pl.String))
                 for t in (self.get("truth_clips"), self.get("truth")) if isinstance(t, pl.DataFrame)]
        if not parts:
            return pl.DataFrame(schema={"clip": pl.String, "split": pl.String})
        return pl.concat(parts).unique(subset="clip", keep="first", maintain_order=True).sort("clip")

    @property
    def teacher(self) -> pl.DataFrame | None:
        return self.get("teacher")

    @property
    def priors(self) -> pl.DataFrame | None:
        return self.get("priors")

    @property
    def systems(self) -> dict[str, pl.DataFrame]:
        """The named input systems, name -> detections table (``{}`` when none)."""
        value = self.get("systems")
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise TypeError(f"tables['systems'] must map system names to detections tables, got {type(value).__name__}")
        return dict(value)

    def without_truth(self) -> "Tables":
        """The tables without the ground truth (what a fitted stage is applied to)."""
        return Tables({k: v for k, v in self.items() if k != "truth"})

    def subset(self, clips) -> "Tables":
        """The tables restricted to ``clips``: every DataFrame with a ``clip`` column and every
        system's table, the rows of those clips in their order (as ``filter``), taken as zero-copy
        slices where the rows come in runs of one clip (:func:`calib.tables.restrict_clips`): a
        stage fit on a fold's clips does not copy the fold's GT points and detections; other
        values pass as they are."""
        from calib.tables import restrict_clips

        clips = sorted(clips)
        out = Tables()
        for name, value in self.items():
            if isinstance(value, dict):
                out[name] = {k: restrict_clips(v, clips) for k, v in value.items()}
            elif isinstance(value, pl.DataFrame) and "clip" in value.columns:
                out[name] = restrict_clips(value, clips)
            else:
                out[name] = value
        return out


class Stage(Declared):
    """Base class. A stage declares its parameters in ``PARAMS`` (:func:`~calib.params.declare`
    of :class:`~calib.params.Param`: type, default, constraint, unit, meaning); its ``__init__``
    only stores them (generated from the table unless written by hand)."""

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
    #: False for a stage whose output costs less to recompute from its input than to write to the
    #: stage cache and read back (a row selection such as threshold or cap: milliseconds, against
    #: a Parquet write of every detection's points): the cache then keeps no entry for it, and a
    #: re-run resumes from the last stored stage before it and selects again
    cache_output: ClassVar[bool] = True

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


def describe_params(params: Mapping[str, Param], indent: str = "    ") -> list[str]:
    """One line per declared parameter: ``name=default  [type, constraint, unit] meaning``."""
    return [indent + p.line(k) for k, p in params.items()]
