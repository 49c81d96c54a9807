"""Model adapters: turn a torch checkpoint and audio (or feature) files into calib tables.

``calib adapt NAME --checkpoint FILE --input ... --out TABLE.parquet``. The protocol and the
registry import no torch; the built-in adapters (energy-instance, accdoa, audio-prior) need the
``torch`` extra. A package adds adapters through the ``calib.adapters`` entry-point group.
"""
from calib.adapters.base import Adapter, AdapterError
from calib.adapters.registry import AdapterSpec, get_adapter, make_adapter, names, specs

__all__ = ["Adapter", "AdapterError", "AdapterSpec", "adapt", "get_adapter", "make_adapter", "names", "specs"]


def adapt(*args, **kwargs):
    """See :func:`calib.adapters.runner.adapt`."""
    from calib.adapters.runner import adapt as _adapt

    return _adapt(*args, **kwargs)
