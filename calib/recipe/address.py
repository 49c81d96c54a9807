"""Addresses into a recipe, for portfolio axes and ``calib run --set``.

An address is a dotted path into the recipe's dict form. Stages are addressed by their address
(``name``, or ``type`` when unnamed) or by index, the emitter as ``emit``::

    stages.rerank.enabled      # toggle a stage on/off
    stages.cap.per_class       # a stage parameter
    stages[0].threshold        # by position
    emit.n                     # the emitter's parameter
    splits.fit                 # any other key of the recipe
    inputs.systems.audio

Setting a parameter the recipe does not list adds it (validation then checks it exists).
"""
from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from calib.recipe.schema import RecipeError

_SEGMENT = re.compile(r"^([^\[\]]+)((?:\[\d+\])*)$")


def parse(address: str) -> list[str | int]:
    """``"stages[2].per_class"`` -> ``["stages", 2, "per_class"]``."""
    out: list[str | int] = []
    if not address or address.startswith(".") or address.endswith(".") or ".." in address:
        raise RecipeError(address, "not an address (dotted keys such as stages.cap.per_class)")
    for seg in address.split("."):
        m = _SEGMENT.match(seg)
        if not m:
            raise RecipeError(address, f"cannot read segment {seg!r}")
        out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return out


def _stage_index(stages: list, key: str, address: str) -> int:
    known = []
    for i, s in enumerate(stages):
        addr = s.get("name") or s.get("type")
        known.append(addr)
        if addr == key:
            return i
    raise RecipeError(address, f"no stage with address {key!r}; stages are: {', '.join(map(str, known)) or '(none)'}")


def _resolve(doc: dict, address: str) -> tuple[Any, str | int]:
    """(container, last key) for ``address``; intermediate tables are created as needed."""
    parts = parse(address)
    if len(parts) >= 2 and parts[0] == "stages" and isinstance(parts[1], str) and isinstance(doc.get("stages"), list):
        parts[1] = _stage_index(doc["stages"], parts[1], address)  # stages.<address> -> its index
    node: Any = doc
    for part in parts[:-1]:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise RecipeError(address, f"index [{part}] out of range")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise RecipeError(address, f"{part!r} is inside a value that is not a table")
            if part not in node:
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if isinstance(last, int) and (not isinstance(node, list) or last >= len(node)):
        raise RecipeError(address, f"index [{last}] out of range")
    if isinstance(last, str) and not isinstance(node, dict):
        raise RecipeError(address, f"{last!r} is inside a value that is not a table")
    return node, last


def get(doc: Mapping, address: str, default: Any = None) -> Any:
    try:
        node, last = _resolve(copy.deepcopy(dict(doc)), address)
    except RecipeError:
        return default
    if isinstance(node, dict):
        return node.get(last, default)
    return node[last]


def set_values(doc: Mapping, values: Mapping[str, Any]) -> dict:
    """A deep copy of ``doc`` with each address set to its value."""
    out = copy.deepcopy(dict(doc))
    for address, value in values.items():
        node, last = _resolve(out, address)
        node[last] = copy.deepcopy(value)
    return out


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"stages.cap.per_class=3"`` -> ("stages.cap.per_class", 3); the value is read as TOML (strings may go bare)."""
    import tomllib

    if "=" not in text:
        raise RecipeError(text, "expected ADDRESS=VALUE, e.g. stages.cap.per_class=3")
    address, raw = (s.strip() for s in text.split("=", 1))
    parse(address)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: take it as a string
    return address, value
