"""Clip names: the one rule for a value that becomes part of an output path.

A clip name comes from a file name (``<seq>.json``, ``<seq>_std.json``, ``<seq>_inference.json``)
but can also come back from a table, a ``metrics.json`` or a portfolio written by someone else.
Wherever it is joined into a path it must be a single, harmless path component: letters, digits,
``_``, ``-`` and ``.``, not starting with ``.`` (no ``..``, no hidden files), at most 200 characters.
STARS/STAIRS names (``fold4_room9_mix000``) and every name the challenge uses fit this rule.
"""
from __future__ import annotations

import re
from typing import Iterable

from calib.io.errors import InputError

MAX_LENGTH = 200
_SAFE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_\-.]*")
RULE = ("a clip name is one path component of letters, digits, '_', '-' and '.', not starting with '.', "
        f"at most {MAX_LENGTH} characters")


def is_safe_clip_name(name: object) -> bool:
    """True when ``name`` can be used as one component of an output path."""
    return (isinstance(name, str) and 0 < len(name) <= MAX_LENGTH and _SAFE.fullmatch(name) is not None)


def check_clip_name(name: object, where: str, *, record: int | None = None, what: str = "row") -> str:
    """``name`` itself when it is a safe clip name, else an :class:`InputError` naming ``where``."""
    if not is_safe_clip_name(name):
        raise InputError(where, f"unsafe clip name {name!r}: {RULE}", record=record, what=what)
    return name  # type: ignore[return-value]


def check_clip_names(names: Iterable[object], where: str, *, what: str = "row") -> None:
    """Check every name of ``names`` (the first bad one is reported with its position)."""
    for i, name in enumerate(names):
        check_clip_name(name, where, record=i, what=what)
