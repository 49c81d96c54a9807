"""Finding adapters: the built-ins plus every ``calib.adapters`` entry point of the installed packages.

A user's package adds an adapter by declaring, in its pyproject.toml::

    [project.entry-points."calib.adapters"]
    my-model = "my_package.adapters:MyModelAdapter"

Listing reads only package metadata; a class is imported when it is asked for, so a broken or
torch-needing adapter never stops the others from being listed or used.
"""
from __future__ import annotations

from calib.adapters.base import AdapterError, check_adapter_class
from calib.registry import Plugin, Registry

GROUP = "calib.adapters"

BUILTINS = {
    "energy-instance": "calib.adapters.energy_instance:EnergyInstanceAdapter",
    "accdoa": "calib.adapters.accdoa:AccdoaAdapter",
    "audio-prior": "calib.adapters.audio_prior:AudioPriorAdapter",
}

#: an adapter's declaration: ``name``, ``target`` ("module:attribute") and ``source`` ("calib
#: (built-in)" or the distribution that declares the entry point)
AdapterSpec = Plugin

ADAPTERS = Registry("adapter", GROUP, targets=BUILTINS, error=AdapterError,
                    check=lambda cls, spec: check_adapter_class(cls, spec.name, spec.target))


def specs() -> list[AdapterSpec]:
    """Every adapter known, built-ins first, then entry points sorted by name (duplicates kept)."""
    return ADAPTERS.specs()


def names() -> list[str]:
    return ADAPTERS.names()


def find(name: str) -> AdapterSpec:
    """The one declaration of ``name`` (an error naming the packages when several declare it)."""
    return ADAPTERS.find(name)


def load_class(spec: AdapterSpec):
    return ADAPTERS.load_target(spec)


def get_adapter(name: str):
    """The adapter class registered under ``name``."""
    return ADAPTERS.get(name)


def make_adapter(name: str, **params):
    return get_adapter(name)(**params)
