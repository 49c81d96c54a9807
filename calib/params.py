"""Typed parameter declarations: one table per component, read by everything that needs to know a
parameter (the component's ``__init__``, recipe validation, ``calib stages``, the conformance suite).

A component (a stage, the reranker's model) declares its parameters once, as a class-level table::

    class Grid(Stage):
        PARAMS = declare(
            n=Param(int, 3, "grid points per side: n x n points per detection", ge=1),
            frac=Param(float, 0.0, "tighten the box to the energy above this share of the peak",
                       unit="fraction of the peak", ge=0, le=1),
        )

Each :class:`Param` carries the type, the default, a constraint where there is one (bounds,
``choices``, the items of a list or table), a unit where there is one and a one-line meaning.
:class:`Declared` turns the table into a keyword-only ``__init__`` that only stores the values
(scikit-learn's contract: nothing is checked or computed there) plus ``get_params`` /
``set_params`` / ``clone``. Values are checked by :meth:`Declared.check_params` when the component
runs, and by the recipe loader (:mod:`calib.recipe.schema`) before anything runs, with the same
declaration, so a bad value fails at load with the recipe key named (``stages[2].n: must be an
integer >= 1, got 0``).

Why a table with defaults instead of an explicit ``__init__`` plus a table: each parameter is
written once (name, type, default, constraint, unit, meaning on one line) and cannot drift from a
signature. A class may still write its own ``__init__`` (a wrapper with a required argument);
then its signature must match the table, which is checked when the class is created.
"""
from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping

from calib.constants import N_CLASSES  # tables keyed by class id accept "3" and 3 alike

CLASS_KEY = f"class id (0..{N_CLASSES - 1})"


class ParamError(ValueError):
    """A parameter value outside its declaration; ``key`` is the parameter's name."""

    def __init__(self, owner: str, key: str, problem: str):
        self.owner, self.key, self.problem = owner, key, problem
        super().__init__(f"{owner}: {key}: {problem}" if owner else f"{key}: {problem}")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default of a parameter that must be given (only for wrappers; stages have defaults)
REQUIRED: Any = _Required()

_TYPE_WORDS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "flags"),
               str: ("a string", "strings"), list: ("a list", "lists"), dict: ("a table", "tables")}


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Rule:
    """What a value may be: a type (or a tuple of types), bounds, choices, and for a list or a
    table the rule of its items (``item``) and, for a table, its keys (``keys="class"``: class ids
    0..12, written "3" in TOML; ``None``: any string). ``nullable``: None is accepted too."""

    type: type | tuple[type, ...]
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    item: "Rule | None" = None
    keys: str | None = None
    nullable: bool = False

    @property
    def types(self) -> tuple[type, ...]:
        return self.type if isinstance(self.type, tuple) else (self.type,)

    # -- what it says
    def bounds(self) -> str:
        """The numeric constraint as text: ``>= 1``, ``in [0, 1]``, ``in (0, 1]``, ``> 0``."""
        lo = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        hi = ("]", self.le) if self.le is not None else (")", self.lt) if self.lt is not None else None
        if lo and hi:
            return f"in {lo[0]}{_fmt(lo[1])}, {_fmt(hi[1])}{hi[0]}"
        if lo:
            return f"{'>=' if lo[0] == '[' else '>'} {_fmt(lo[1])}"
        if hi:
            return f"{'<=' if hi[0] == ']' else '<'} {_fmt(hi[1])}"
        return ""

    def constraint(self) -> str:
        """The constraint beyond the type, empty when there is none: ``>= 1``, ``in [0, 1]``,
        ``one of 'box', 'mask'``, ``items in [0, 12]`` (a list's), ``values >= 0`` (a table's)."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        parts = [self.bounds()]
        inner = self.item.constraint() if self.item is not None else ""
        if inner:
            parts.append(("values " if dict in self.types else "items ") + inner)
        return "; ".join(p for p in parts if p)

    def describe(self, *, plural: bool = False) -> str:
        """What a value must be, as the end of "must be ...": ``an integer >= 1``, ``a number in
        [0, 1]``, ``a list of strings``, ``one of 'box', 'mask'``."""
        if self.choices is not None:
            listed = ", ".join(repr(c) for c in self.choices)
            return f"values among {listed}" if plural else f"one of {listed}"
        words = []
        for t in self.types:
            one, many = _TYPE_WORDS.get(t, (f"a {t.__name__}", f"{t.__name__}s"))
            word = many if plural else one
            if self.item is not None and t in (list, dict):
                inner = self.item.describe(plural=True)
                key = CLASS_KEY if self.keys == "class" else "name"
                word += f" of {key} -> {inner}" if t is dict else f" of {inner}"
            words.append(word)
        text = " or ".join(words)
        b = self.bounds()
        if b:
            text += f" {b}"
        if self.nullable:
            text += " (or none)"
        return text

    def type_name(self) -> str:
        """A short type for listings: ``int``, ``float``, ``list[str]``, ``table[class -> float]``."""
        names = []
        for t in self.types:
            n = {dict: "table"}.get(t, t.__name__)
            if self.item is not None and t in (list, dict):
                inner = self.item.type_name()
                n = f"list[{inner}]" if t is list else f"table[{'class' if self.keys == 'class' else 'str'} -> {inner}]"
            names.append(n)
        return " | ".join(names) + (" | none" if self.nullable else "")

    # -- checking a value
    def _type_ok(self, value: Any) -> bool:
        for t in self.types:
            if t is bool and isinstance(value, bool):
                return True
            if isinstance(value, bool):
                continue
            if t is float and isinstance(value, (int, float)):
                return True
            if t is int and isinstance(value, int):
                return True
            if t is list and isinstance(value, (list, tuple)):
                return True
            if t is dict and isinstance(value, Mapping):
                return True
            if t in (str,) and isinstance(value, str):
                return True
        return False

    def _bounds_ok(self, v: float) -> bool:
        if isinstance(v, float) and math.isnan(v):
            return self.ge is None and self.gt is None and self.le is None and self.lt is None
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def problem(self, value: Any) -> str | None:
        """None when ``value`` satisfies the rule, else ``"must be ..., got ..."``."""
        detail = self._detail(value)
        if detail is None:
            return None
        got = f"got {value!r}" if detail == "" else f"got {value!r}: {detail}"
        return f"must be {self.describe()}, {got}"

    def _detail(self, value: Any) -> str | None:
        """None: fine; "": wrong as a whole; else what inside is wrong (an item, a key)."""
        if value is None:
            return None if self.nullable else ""
        if self.choices is not None:
            return None if any(value == c and type(value) is type(c) for c in self.choices) else ""
        if not self._type_ok(value):
            return ""
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not self._bounds_ok(value):
            return ""
        if self.item is not None and isinstance(value, (list, tuple)):
            for i, x in enumerate(value):
                if self.item._detail(x) is not None:
                    return f"item {i} ({x!r}) is not {self.item.describe()}"
        if isinstance(value, Mapping):
            for k, x in value.items():
                if self.keys == "class":
                    bad = _class_key_problem(k)
                    if bad:
                        return bad
                elif not isinstance(k, str):
                    return f"key {k!r} is not a string"
                if self.item is not None and self.item._detail(x) is not None:
                    return f"the value of {k!r} ({x!r}) is not {self.item.describe()}"
        return None


def _class_key_problem(k: Any) -> str | None:
    try:
        c = int(k)
    except (TypeError, ValueError):
        return f"key {k!r} is not a class id"
    if isinstance(k, bool) or str(c) != str(k).strip():
        return f"key {k!r} is not a class id"
    if not 0 <= c < N_CLASSES:
        return f"class {c} outside 0..{N_CLASSES - 1}"
    return None


@dataclass(frozen=True, init=False)
class Param(Rule):
    """One declared parameter: its rule, its ``default``, a one-line ``meaning`` and a ``unit``
    where the value has one (degrees, frames, cm, fraction, seconds, MiB, detections...)."""

    default: Any = None
    meaning: str = ""
    unit: str | None = None

    def __init__(self, type, default, meaning: str, *, unit: str | None = None, ge=None, gt=None, le=None, lt=None,
                 choices: Iterable | None = None, item: Rule | type | None = None, keys: str | None = None,
                 nullable: bool = False):
        if item is not None and not isinstance(item, Rule):
            item = Rule(item)  # a bare type (or tuple of types) for the items
        for k, v in dict(type=type, ge=ge, gt=gt, le=le, lt=lt, choices=tuple(choices) if choices is not None else None,
                         item=item, keys=keys, nullable=nullable, default=default, meaning=meaning, unit=unit).items():
            object.__setattr__(self, k, v)

    def but(self, **changes) -> "Param":
        """A copy with some fields changed (``CLUSTER["min_support"].but(default=1)``)."""
        new = copy.copy(self)
        for k, v in changes.items():
            if k not in self.__dataclass_fields__:
                raise TypeError(f"Param has no field {k!r}")
            object.__setattr__(new, k, v)
        return new

    def info(self, name: str) -> dict[str, Any]:
        """The declaration as JSON-able fields (``calib stages --json``)."""
        return {"name": name, "type": self.type_name(), "default": None if self.default is REQUIRED else self.default,
                "required": self.default is REQUIRED, "constraint": self.constraint() or None, "unit": self.unit,
                "meaning": self.meaning}

    def line(self, name: str) -> str:
        """One line for listings: ``n=3  (int >= 1; points) grid points per side``."""
        default = "(required)" if self.default is REQUIRED else repr(self.default)
        what, c = self.type_name(), self.constraint()
        if c:
            what += f" {c}" if c.startswith((">", "<", "in ")) else f": {c}"
        if self.unit:
            what += f"; {self.unit}"
        return f"{name}={default}  ({what}) {self.meaning}"


def declare(**params: Param) -> dict[str, Param]:
    """The parameter table of a component, in declaration order (what ``PARAMS`` holds)."""
    for name, p in params.items():
        if not isinstance(p, Param):
            raise TypeError(f"parameter {name!r}: declare it with Param(...), got {type(p).__name__}")
    return dict(params)


def problems(params: Mapping[str, Param], values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, problem) for every value of ``values`` its declaration in ``params`` rejects, and
    for every name not declared; [] when all are fine."""
    out = []
    for k, v in values.items():
        p = params.get(k)
        if p is None:
            out.append((k, f"unknown parameter; known: {', '.join(params) or '(none)'}"))
            continue
        problem = p.problem(v)
        if problem:
            out.append((k, problem))
    return out


def _init_for(params: Mapping[str, Param]):
    """A keyword-only ``__init__`` that stores each declared parameter (a deep copy of its default
    when not given, so no two objects share a mutable default) and nothing else."""

    def __init__(self, **kwargs):
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s) {unknown}; "
                            f"it takes {list(params)}")
        missing = [k for k, p in params.items() if p.default is REQUIRED and k not in kwargs]
        if missing:
            raise TypeError(f"{type(self).__name__}() missing required keyword argument(s) {missing}")
        for name, p in params.items():
            setattr(self, name, kwargs[name] if name in kwargs else copy.deepcopy(p.default))

    empty = inspect.Parameter.empty
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=empty if p.default is REQUIRED else p.default)
           for n, p in params.items()])
    __init__.__doc__ = "Store the parameters (see the class's ``PARAMS``)."
    return __init__


def check_signature(cls: type, params: Mapping[str, Param]) -> None:
    """A hand-written ``__init__`` must take exactly the declared parameters, keyword-only, with
    the declared defaults; a ``TypeError`` naming the difference otherwise."""
    sig = inspect.signature(cls.__init__)
    got = {p.name: p for p in sig.parameters.values() if p.name != "self"}
    if list(got) != list(params):
        raise TypeError(f"{cls.__qualname__}.__init__ takes {list(got)} but PARAMS declares {list(params)}")
    for name, p in got.items():
        want = inspect.Parameter.empty if params[name].default is REQUIRED else params[name].default
        if p.kind is not p.KEYWORD_ONLY or not _same(p.default, want):
            raise TypeError(f"{cls.__qualname__}.__init__: parameter {name!r} must be keyword-only with the "
                            f"declared default {want!r}, has {p.default!r}")


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and a == b)


class Declared:
    """Base of components with declared parameters (scikit-learn's estimator contract).

    ``PARAMS`` (a :func:`declare` table) is the one place a parameter is declared. A subclass that
    declares ``PARAMS`` without writing ``__init__`` gets one that only stores the values; one that
    writes its own has its signature checked against the table."""

    PARAMS: ClassVar[dict[str, Param]] = {}
    #: the component's name in messages (a stage's recipe type)
    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "PARAMS" not in cls.__dict__:
            return
        if "__init__" in cls.__dict__:
            check_signature(cls, cls.PARAMS)
        else:
            cls.__init__ = _init_for(cls.PARAMS)

    @classmethod
    def param_names(cls) -> list[str]:
        return list(cls.PARAMS)

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        return {k: p.default for k, p in cls.PARAMS.items()}

    def get_params(self) -> dict[str, Any]:
        return {k: copy.deepcopy(getattr(self, k)) for k in self.param_names()}

    def set_params(self, **params) -> "Declared":
        for k, v in params.items():
            if k not in self.PARAMS:
                raise ValueError(f"{self.name or type(self).__name__!r} has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def check_params(self) -> None:
        """Raise :class:`ParamError` (a ValueError) naming the first parameter whose value its
        declaration rejects. Components call it where they start working (fit, apply)."""
        found = problems(self.PARAMS, {k: getattr(self, k) for k in self.PARAMS})
        if found:
            raise ParamError(self.name or type(self).__name__, *found[0])
