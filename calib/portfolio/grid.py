"""Portfolio grids: a base recipe and axes of values; every combination is one variant.

    base = "decision-calibrated.toml"   # a recipe file (relative to this file) or a shipped name
    folds = 5                           # K clip folds for the out-of-fold estimate
    seed = 0                            # fold assignment
    max_systems = 4                     # the challenge accepts up to 4 systems
    fragile_gap = 0.02                  # in-sample minus out-of-fold mAP that flags a component

    [set]                               # fixed overrides for every variant (optional)
    "splits.fit" = ["dev-train-sony", "dev-train-tau"]

    [site]                              # the site-held-out check: GT split names containing...
    fit = "sony"                        # ... this are fit on
    score = "tau"                       # ... this are scored

    [axes]                              # addresses (see calib.recipe.address) -> values
    "stages.rerank.enabled" = [true, false]
    "stages.cap.per_class" = [1, 3]
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from calib.recipe.address import parse, set_values
from calib.recipe.schema import Recipe, RecipeError, _check_keys, _typed

MAX_SYSTEMS = 4


@dataclass
class Grid:
    base: str
    axes: dict[str, list] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)  # the [set] table
    folds: int = 5
    seed: int = 0
    max_systems: int = MAX_SYSTEMS
    fragile_gap: float = 0.02
    site_fit: str = "sony"
    site_score: str = "tau"

    KEYS = ("base", "axes", "set", "folds", "seed", "max_systems", "fragile_gap", "site")

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"base": self.base, "folds": self.folds, "seed": self.seed,
                             "max_systems": self.max_systems, "fragile_gap": self.fragile_gap}
        if self.fixed:
            d["set"] = dict(self.fixed)
        d["site"] = {"fit": self.site_fit, "score": self.site_score}
        d["axes"] = {k: list(v) for k, v in self.axes.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping, source: str | None = None) -> "Grid":
        _check_keys(d, cls.KEYS, "", source)
        axes = _typed(d, "axes", dict, "", source, default={})
        for k, v in axes.items():
            if not isinstance(v, list) or not v:
                raise RecipeError(f"axes.{k}", "expected a non-empty list of values", source)
            try:
                parse(k)
            except RecipeError as e:
                raise RecipeError(f"axes.{k}", str(e), source) from None
        site = _typed(d, "site", dict, "", source, default={})
        _check_keys(site, ("fit", "score"), "site", source)
        g = cls(
            base=_typed(d, "base", str, "", source, required=True),
            axes=dict(axes),
            fixed=dict(_typed(d, "set", dict, "", source, default={})),
            folds=_typed(d, "folds", int, "", source, default=5),
            seed=_typed(d, "seed", int, "", source, default=0),
            max_systems=_typed(d, "max_systems", int, "", source, default=MAX_SYSTEMS),
            fragile_gap=float(_typed(d, "fragile_gap", (int, float), "", source, default=0.02)),
            site_fit=_typed(site, "fit", str, "site", source, default="sony"),
            site_score=_typed(site, "score", str, "site", source, default="tau"),
        )
        if g.folds < 2:
            raise RecipeError("folds", f"need at least 2 folds, got {g.folds}", source)
        if not 1 <= g.max_systems <= MAX_SYSTEMS:
            raise RecipeError("max_systems", f"between 1 and {MAX_SYSTEMS}, got {g.max_systems}", source)
        return g


@dataclass
class Variant:
    name: str  # v01, v02, ...
    settings: dict[str, Any]  # axis address -> value
    recipe: Recipe

    @property
    def label(self) -> str:
        return ", ".join(f"{_short(k)}={_value_text(v)}" for k, v in self.settings.items()) or "base"


def _short(address: str) -> str:
    return address[len("stages."):] if address.startswith("stages.") else address


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)


def load_grid(path: str | os.PathLike) -> tuple[Grid, Path]:
    """(grid, path of its base recipe)."""
    from calib.recipe.io import read_document, resolve

    path = Path(path)
    grid = Grid.from_dict(read_document(path), source=str(path))
    local = path.parent / grid.base
    base = local if local.exists() else resolve(grid.base)
    return grid, base


def expand(grid: Grid, base_doc: Mapping, source: str | None = None) -> list[Variant]:
    """Every combination of the axes' values (first axis slowest), each a validated recipe."""
    names = list(grid.axes)
    combos = list(itertools.product(*(grid.axes[k] for k in names))) if names else [()]
    width = max(2, len(str(len(combos))))
    fixed_doc = set_values(base_doc, grid.fixed) if grid.fixed else dict(base_doc)
    out = []
    for i, values in enumerate(combos, start=1):
        settings = dict(zip(names, values))
        name = f"v{i:0{width}d}"
        try:
            doc = set_values(fixed_doc, settings)
            recipe = Recipe.from_dict(doc, source=source)
        except RecipeError as e:
            raise RecipeError("axes", f"variant {name} ({', '.join(f'{k}={v!r}' for k, v in settings.items())}): "
                              f"{e.message}", source) from None
        out.append(Variant(name, settings, recipe))
    return out
