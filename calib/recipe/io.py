"""Reading and writing recipes: TOML (tomllib / a small writer) or YAML (PyYAML), and the
recipes shipped with calib (``calib/recipes/*.toml``, referred to by name)."""
from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from calib.recipe import toml_writer
from calib.recipe.schema import Recipe, RecipeError
from calib.publish import write_atomic

YAML_SUFFIXES = (".yaml", ".yml")


def shipped_recipes() -> dict[str, Path]:
    """Name -> path of the recipes that come with calib."""
    root = resources.files("calib") / "recipes"
    if not root.is_dir():
        return {}
    return {Path(p.name).stem: Path(str(p)) for p in sorted(root.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".toml")}


def resolve(ref: str | os.PathLike) -> Path:
    """A recipe file path, or the name of a shipped recipe."""
    p = Path(ref)
    if p.exists():
        return p
    shipped = shipped_recipes()
    if str(ref) in shipped:
        return shipped[str(ref)]
    raise RecipeError("", f"no such recipe file, and not a shipped recipe (shipped: {', '.join(shipped) or 'none'})",
                      str(ref))


def parse_text(text: str, source: str, fmt: str = "toml") -> dict[str, Any]:
    """The raw mapping of a TOML or YAML document, with parse errors naming the file."""
    if fmt == "yaml":
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RecipeError("", f"not valid YAML: {e}", source) from None
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise RecipeError("", f"not valid TOML: {e}", source) from None
    if not isinstance(doc, dict):
        raise RecipeError("", "a recipe is a table of keys (name, inputs, stages, ...)", source)
    return doc


def read_document(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    fmt = "yaml" if path.suffix.lower() in YAML_SUFFIXES else "toml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecipeError("", f"cannot read: {e.strerror}", str(path)) from None
    return parse_text(text, str(path), fmt)


def load_recipe(ref: str | os.PathLike, *, check: bool = True) -> Recipe:
    """Read and validate a recipe file (TOML or YAML) or a shipped recipe by name."""
    path = resolve(ref)
    return Recipe.from_dict(read_document(path), source=str(path), check=check)


def _drop_none(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_drop_none(x) for x in v]
    return v


def dumps_recipe(recipe: Recipe | Mapping, fmt: str = "toml") -> str:
    doc = recipe.to_dict() if isinstance(recipe, Recipe) else dict(recipe)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return toml_writer.dumps(_drop_none(doc))


def dump_recipe(recipe: Recipe | Mapping, path: str | os.PathLike) -> Path:
    """Write a recipe (format by suffix: .yaml/.yml or TOML), atomically."""
    path = Path(path)
    fmt = "yaml" if path.suffix.lower() in YAML_SUFFIXES else "toml"
    text = dumps_recipe(recipe, fmt)
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
