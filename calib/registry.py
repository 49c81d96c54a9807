"""One plug-in registry for every kind of component packages can add: stages, features, adapters.

A :class:`Registry` maps a name to an object (a stage class, a feature, an adapter class). Objects
arrive three ways, all lazy (nothing is imported until a name is looked up or the list is asked for):

- **decorators** in calib's own modules (``@register("cap")``, ``@feature``): the registry imports
  its built-in modules (``modules``) the first time it is consulted;
- **built-in targets** (``targets``: name -> ``"module:attribute"``), imported when that name is
  asked for, so one broken or heavy component (an adapter needing torch) never stops the others;
- **entry points** of installed packages, one group per kind (``calib.stages``, ``calib.features``,
  ``calib.adapters``)::

      [project.entry-points."calib.stages"]
      my-stage = "mypkg.stages:MyStage"     # one object, registered under the entry point's name
      my-stages = "mypkg.stages"            # a module whose decorators register its objects

  A ``module:attribute`` entry point is imported when its name is asked for; a bare module is
  imported with the built-ins (an import error is kept and reported with "unknown name" errors,
  and never stops the built-ins).

Only these names are ever imported: built-in modules named in calib's code and entry points of
installed packages (trusted like any installed code). A name read from a file (a recipe's stage
``type``) is only looked up, never imported.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable, Mapping

BUILTIN = "calib (built-in)"


@dataclass(frozen=True)
class Plugin:
    """Where a name comes from: ``target`` is ``"module:attribute"`` (one object) or ``"module"``
    (importing it registers objects); ``source`` is "calib (built-in)" or the distribution."""

    name: str
    target: str
    source: str

    @property
    def module(self) -> str:
        return self.target.partition(":")[0].strip()

    @property
    def attribute(self) -> str:
        return self.target.partition(":")[2].strip()


def _distribution(ep) -> str:
    dist = getattr(ep, "dist", None)
    return "entry point" if dist is None else f"{dist.metadata['Name']} {dist.version}"


def _identity(obj: Any) -> tuple:
    # the same definition registered again (a module imported twice) is not a clash
    return (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None) or id(obj))


class Registry:
    """Name -> object for one kind of component (see the module docstring).

    ``kind``: what the objects are ("stage"), for messages; ``group``: the entry-point group;
    ``modules``: built-in modules whose import registers objects (or a function returning them,
    called once); ``targets``: built-in name -> ``"module:attribute"``; ``error``: the exception
    class for unknown names, ``clash`` the one for a name registered twice (default ``error``);
    ``check(obj, plugin)``: validates (and may prepare) an object loaded from a target, raising to
    refuse it; ``identity(obj)``: objects with equal identities may be registered again under one
    name; ``hint``: how to add one, appended to "unknown name" errors; ``plugin_objects``: False
    when every entry point names a module to import (its ``:attribute`` ignored), as for features,
    whose modules register many at once."""

    def __init__(self, kind: str, group: str, *, modules: Iterable[str] | Callable[[], Iterable[str]] = (),
                 targets: Mapping[str, str] | None = None, error: type[Exception] = LookupError,
                 clash: type[Exception] | None = None, check: Callable[[Any, Plugin], None] | None = None,
                 identity: Callable[[Any], Any] = _identity, hint: str = "", plugin_objects: bool = True):
        self.kind = kind
        self.group = group
        self.error = error
        self.clash = clash or error
        self.hint = hint or f"packages add {kind}s through the {group!r} entry-point group"
        self._modules = modules
        self._targets = dict(targets or {})
        self._check = check
        self._identity = identity
        self._plugin_objects = plugin_objects
        self._objects: dict[str, Any] = {}  # registered by a module (a decorator)
        self._origin: dict[str, str] = {}
        self._imported: dict[str, tuple[str, Any]] = {}  # name -> (its target, the object imported)
        #: entry point name -> why importing it failed
        self.broken: dict[str, str] = {}
        self._builtins_loaded = False
        self._plugins: tuple[tuple[str, ...], list[Plugin]] | None = None

    # -- registering
    def add(self, name: str, obj: Any, *, origin: str | None = None) -> Any:
        """Register ``obj`` under ``name``; another object already there is an error."""
        old = self._objects.get(name)
        if old is not None and self._identity(old) != self._identity(obj):
            raise self.clash(f"{self.kind} name {name!r} is already registered by {self._origin[name]}")
        self._objects[name] = obj
        self._origin[name] = origin or str(getattr(obj, "__module__", "?"))
        return obj

    def remove(self, name: str) -> None:
        """Forget ``name`` (e.g. what a test registered); unknown names are ignored."""
        self._objects.pop(name, None)
        self._origin.pop(name, None)
        self._imported.pop(name, None)

    # -- what is installed
    def plugins(self) -> list[Plugin]:
        """The installed packages' entry points of this group, sorted by name (read from package
        metadata only, again whenever ``sys.path`` changed)."""
        path = tuple(sys.path)
        if self._plugins is None or self._plugins[0] != path:
            found = [Plugin(ep.name, ep.value.strip(), _distribution(ep))
                     for ep in sorted(entry_points(group=self.group), key=lambda e: (e.name, e.value))]
            # calib's own metadata declaring a built-in is not a second declaration
            found = [p for p in found if self._targets.get(p.name) != p.target]
            self._plugins = (path, found)
        return list(self._plugins[1])

    def specs(self) -> list[Plugin]:
        """Every declared ``name -> module:attribute`` (built-ins first, then entry points by name;
        duplicates kept), without importing anything."""
        return ([Plugin(n, t, BUILTIN) for n, t in self._targets.items()]
                + [p for p in self.plugins() if self._is_target(p)])

    def _is_target(self, p: Plugin) -> bool:
        return bool(p.attribute) and self._plugin_objects

    def plugin_modules(self) -> dict[str, str]:
        """Entry-point name -> module of every installed entry point of this group."""
        return {p.name: p.module for p in self.plugins()}

    def builtin_modules(self) -> list[str]:
        mods = self._modules() if callable(self._modules) else self._modules
        return list(mods)

    def load(self) -> None:
        """Import the built-in modules (once) and the entry points that name a bare module (those
        not imported yet; a failure is remembered in :attr:`broken`, not raised)."""
        if not self._builtins_loaded:
            for mod in self.builtin_modules():
                importlib.import_module(mod)
            self._builtins_loaded = True
        for p in self.plugins():
            if self._is_target(p) or p.name in self.broken or p.module in sys.modules:
                continue
            try:
                importlib.import_module(p.module)
            except Exception as e:  # a broken plug-in must not stop the built-ins; say so where it matters
                self.broken[p.name] = f"{self.group} entry point {p.name!r} ({p.module}) failed to import: {e}"

    # -- looking up
    def names(self) -> list[str]:
        """Every name known, sorted (targets included, not imported)."""
        self.load()
        return sorted(set(self._objects) | {s.name for s in self.specs()})

    def find(self, name: str) -> Plugin:
        """The one ``module:attribute`` declaration of ``name`` (an error when none or several)."""
        matches = [s for s in self.specs() if s.name == name]
        if not matches:
            raise self.unknown(name)
        if len({m.target for m in matches}) > 1:
            who = "; ".join(f"{m.target} from {m.source}" for m in matches)
            raise self.error(f"{self.kind} name {name!r} is declared more than once ({who}); uninstall or rename one")
        return matches[0]

    def get(self, name: str) -> Any:
        """The object registered under ``name``; a ``module:attribute`` declaration is imported on
        first use (and checked again for a second declaration of the name every time)."""
        self.load()
        declared = [s for s in self.specs() if s.name == name]
        if name in self._objects:
            if declared:
                raise self.clash(f"{self.kind} name {name!r} is registered by {self._origin[name]} and declared by "
                                 f"{declared[0].target} (from {declared[0].source}); uninstall or rename one")
            return self._objects[name]
        spec = self.find(name)
        cached = self._imported.get(name)
        if cached is None or cached[0] != spec.target:
            cached = self._imported[name] = (spec.target, self.load_target(spec))
        return cached[1]

    def load_target(self, spec: Plugin) -> Any:
        """Import ``spec.target`` (``module:attribute``) and check it."""
        try:
            obj = importlib.import_module(spec.module)
            for part in filter(None, spec.attribute.split(".")):
                obj = getattr(obj, part)
        except ImportError as e:
            raise self.error(f"{self.kind} {spec.name!r} ({spec.target}, from {spec.source}) cannot be imported: {e}"
                             + (" (install calib[torch])" if e.name == "torch" else "")) from e
        except AttributeError as e:
            raise self.error(f"{self.kind} {spec.name!r}: {spec.target} not found ({e})") from e
        if self._check is not None:
            self._check(obj, spec)
        return obj

    def unknown(self, name: str) -> Exception:
        broken = "".join(f"; {msg}" for msg in self.broken.values())
        return self.error(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or 'none'} "
                          f"({self.hint}){broken}")

    def registered(self) -> dict[str, Any]:
        """Every object registered by a module so far (built-ins and module entry points imported),
        in registration order; ``module:attribute`` targets not asked for are not imported."""
        self.load()
        return dict(self._objects)

    def all(self) -> dict[str, Any]:
        """Every object, ``module:attribute`` targets imported too. A built-in that fails is an
        error; an entry point that fails is left out and remembered in :attr:`broken`."""
        out = self.registered()
        for spec in self.specs():
            if spec.name in out or spec.name in self.broken:
                continue
            try:
                out[spec.name] = self.get(spec.name)
            except Exception as e:
                if spec.source == BUILTIN:
                    raise
                self.broken[spec.name] = f"{self.group} entry point {spec.name!r} ({spec.target}): {e}"
        return out
