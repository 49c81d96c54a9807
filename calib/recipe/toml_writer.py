"""A small TOML writer for recipes and grids (reading uses the standard library's tomllib).

Covers what recipes hold: strings, booleans, integers, floats (incl. inf/nan), arrays, tables,
arrays of tables and nested tables inside them (written inline). ``None`` has no TOML spelling:
callers drop such keys before writing; the writer refuses them so nothing is silently lost.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(s: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest literal."""
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: Any) -> str:
    if not isinstance(k, str):
        raise TypeError(f"TOML keys are strings, got {k!r}")
    return k if _BARE_KEY.fullmatch(k) else _string(k)


def _scalar(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # shortest repr that reads back to the same float
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_scalar(x, f"{where}[{i}]") for i, x in enumerate(v)) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_scalar(x, f'{where}.{k}')}" for k, x in v.items()) + "}"
    if v is None:
        raise TypeError(f"{where}: None has no TOML representation (leave the key out)")
    raise TypeError(f"{where}: cannot write {type(v).__name__} {v!r} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, Mapping) for x in v)


def _write_table(lines: list[str], table: Mapping, path: list[str]) -> None:
    # Plain keys first: TOML attaches key = value lines to the most recent header.
    for k, v in table.items():
        if not isinstance(v, Mapping) and not _is_table_array(v):
            lines.append(f"{_key(k)} = {_scalar(v, '.'.join(path + [str(k)]))}")
    for k, v in table.items():
        if isinstance(v, Mapping):
            lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path + [k]) + "]")
            _write_table(lines, v, path + [k])
    for k, v in table.items():
        if _is_table_array(v):
            for i, item in enumerate(v):
                lines.append("")
                lines.append("[[" + ".".join(_key(p) for p in path + [k]) + "]]")
                # Inside an array-of-tables element every value is written inline (nested
                # tables as inline tables), which keeps the element in one block.
                for kk, vv in item.items():
                    lines.append(f"{_key(kk)} = {_scalar(vv, '.'.join(path + [f'{k}[{i}]', str(kk)]))}")


def dumps(doc: Mapping[str, Any]) -> str:
    """Serialize a mapping to TOML text that ``tomllib.loads`` reads back equal."""
    lines: list[str] = []
    _write_table(lines, doc, [])
    text = "\n".join(lines).lstrip("\n")
    return text + "\n"
