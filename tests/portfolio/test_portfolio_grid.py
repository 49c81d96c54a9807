"""Grid files: reading, expansion into validated variants, errors naming the variant."""
from __future__ import annotations

import pytest

from calib.portfolio import Grid, expand, load_grid
from calib.recipe import RecipeError, dump_recipe
from tests.recipe.toys import recipe_dict, toy_stages


@pytest.fixture(autouse=True)
def toys():
    with toy_stages() as t:
        yield t


def test_expand_product_in_axis_order():
    g = Grid.from_dict({"base": "r.toml", "axes": {"stages.t_bias.enabled": [True, False], "stages.t_scale.factor": [1, 2, 3]},
                        "set": {"emit.digits": 2}})
    vs = expand(g, recipe_dict())
    assert [v.name for v in vs] == ["v01", "v02", "v03", "v04", "v05", "v06"]
    assert vs[0].label == "t_bias.enabled=on, t_scale.factor=1" and vs[5].label == "t_bias.enabled=off, t_scale.factor=3"
    assert [v.recipe.stages[1].enabled for v in vs] == [True] * 3 + [False] * 3
    assert [v.recipe.stages[2].params["factor"] for v in vs] == [1, 2, 3] * 2
    assert all(v.recipe.emit.params == {"digits": 2} for v in vs)
    assert expand(Grid.from_dict({"base": "r.toml"}), recipe_dict())[0].label == "base"


def test_bad_axis_value_names_the_variant():
    g = Grid.from_dict({"base": "r.toml", "axes": {"stages.t_scale.factor": [1, "x"]}})
    with pytest.raises(RecipeError, match=r"variant v02 \(stages.t_scale.factor='x'\): stages\[2\].factor: must be a number, got 'x'"):
        expand(g, recipe_dict())


@pytest.mark.parametrize("d, msg", [
    ({"base": "r", "axes": {"stages.a.k": []}}, "axes.stages.a.k: expected a non-empty list"),
    ({"base": "r", "folds": 1}, "folds: need at least 2 folds"),
    ({"base": "r", "max_systems": 5}, "max_systems: between 1 and 4"),
    ({"base": "r", "site": {"fit": "sony", "scor": "tau"}}, "site.scor: unknown key"),
    ({"axes": {}}, "base: missing"),
])
def test_grid_errors(d, msg):
    with pytest.raises(RecipeError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Grid.from_dict(d)


def test_load_grid_resolves_base_next_to_it(tmp_path):
    dump_recipe(recipe_dict(), tmp_path / "r.toml")
    (tmp_path / "g.toml").write_text('base = "r.toml"\nfolds = 3\n[axes]\n"stages.t_add.delta" = [0.0, 0.5]\n')
    g, base = load_grid(tmp_path / "g.toml")
    assert base == tmp_path / "r.toml" and g.folds == 3 and g.axes == {"stages.t_add.delta": [0.0, 0.5]}
    assert Grid.from_dict(g.to_dict()) == g
