"""Finding adapters: the built-ins plus every ``calib.adapters`` entry point of the installed packages.

A user's package adds an adapter by declaring, in its pyproject.toml::

    [project.entry-points."calib.adapters"]
    my-model = "my_package.adapters:MyModelAdapter"

Listing reads only package metadata; a class is imported when it is asked for, so a broken or
torch-needing adapter never stops the others from being listed or used.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from calib.adapters.base import AdapterError, check_adapter_class

GROUP = "calib.adapters"

BUILTINS = {
    "energy-instance": "calib.adapters.energy_instance:EnergyInstanceAdapter",
    "accdoa": "calib.adapters.accdoa:AccdoaAdapter",
    "audio-prior": "calib.adapters.audio_prior:AudioPriorAdapter",
}


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    target: str  # "module:attribute"
    source: str  # "calib (built-in)" or the distribution that declares the entry point


def _distribution(ep) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "entry point"
    return f"{dist.metadata['Name']} {dist.version}"


def specs() -> list[AdapterSpec]:
    """Every adapter known, built-ins first, then entry points sorted by name (duplicates kept)."""
    found = [AdapterSpec(name, target, "calib (built-in)") for name, target in BUILTINS.items()]
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        if BUILTINS.get(ep.name) == ep.value:
            continue  # calib's own metadata declaring a built-in
        found.append(AdapterSpec(ep.name, ep.value, _distribution(ep)))
    return found


def names() -> list[str]:
    return sorted({s.name for s in specs()})


def find(name: str) -> AdapterSpec:
    matches = [s for s in specs() if s.name == name]
    if not matches:
        raise AdapterError(f"unknown adapter {name!r}; known: {', '.join(names()) or 'none'} "
                           f"(packages add adapters through the {GROUP!r} entry-point group)")
    if len({m.target for m in matches}) > 1:
        who = "; ".join(f"{m.target} from {m.source}" for m in matches)
        raise AdapterError(f"adapter name {name!r} is declared more than once ({who}); uninstall or rename one")
    return matches[0]


def load_class(spec: AdapterSpec):
    module_name, _, attr = spec.target.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except ImportError as e:
        raise AdapterError(f"adapter {spec.name!r} ({spec.target}, from {spec.source}) cannot be imported: {e}"
                           + (" (install calib[torch])" if e.name == "torch" else "")) from e
    except AttributeError as e:
        raise AdapterError(f"adapter {spec.name!r}: {spec.target} not found ({e})") from e
    check_adapter_class(obj, spec.name, spec.target)
    return obj


def get_adapter(name: str):
    """The adapter class registered under ``name``."""
    return load_class(find(name))


def make_adapter(name: str, **params):
    return get_adapter(name)(**params)
