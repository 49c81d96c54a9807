"""Recipe schema: round trip through TOML/YAML, validation errors that name the key, addresses."""
from __future__ import annotations

import math
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calib.recipe import Recipe, RecipeError, dump_recipe, dumps_recipe, load_recipe
from calib.recipe import address
from calib.recipe.io import read_document
from calib.recipe.toml_writer import dumps
from tests.recipe.toys import recipe_dict, toy_stages


@pytest.fixture(autouse=True)
def toys():
    with toy_stages() as t:
        yield t


def full_dict() -> dict:
    d = recipe_dict()
    d["inputs"] = {"gt": "gt", "teacher": "teacher/", "teacher_format": "polar6", "priors": "p.csv", "primary": "b",
                   "systems": {"a": "systems/a", "b": "x/b.parquet"}}
    d["stages"][0]["name"] = "first add"
    d["stages"].append({"type": "t_add", "name": "late", "enabled": False, "delta": -1.5e-7})
    d["scoring"] = {"protocol": "dcase2026", "iou_thresholds": [0.5, 0.75], "options": {"tie_order": "stable"}}
    return d


def test_round_trip_toml_and_yaml(tmp_path):
    r = Recipe.from_dict(full_dict())
    for name in ("r.toml", "r.yaml"):
        path = dump_recipe(r, tmp_path / name)
        back = load_recipe(path)
        assert back == r
        assert back.to_dict() == r.to_dict()
    # what was read is what is written: the dict form is the input, key for key
    assert r.to_dict() == full_dict()
    assert r.stages[3].enabled is False and [a for a in (s.address for s in r.stages)] == ["first add", "t_bias", "t_scale", "late"]
    assert [p for p, _ in r.chain()] == ["stages[0]", "stages[1]", "stages[2]", "emit"]


def test_toml_text_is_readable_and_stable():
    text = dumps_recipe(Recipe.from_dict(recipe_dict()))
    assert "[[stages]]\ntype = \"t_add\"\ndelta = 0.25" in text
    assert "[emit]\ntype = \"t_round\"\ndigits = 3" in text
    assert dumps_recipe(Recipe.from_dict(tomllib.loads(text))) == text


_keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)
_scalars = (st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
                       max_leaves=8)
_docs = st.dictionaries(_keys, _values | st.lists(st.dictionaries(_keys, _values, max_size=3), min_size=1, max_size=2),
                        max_size=4)


@settings(max_examples=150, deadline=None)
@given(_docs)
def test_toml_writer_round_trips_any_document(doc):
    assert tomllib.loads(dumps(doc)) == doc


def test_toml_writer_nan_inf_and_none():
    back = tomllib.loads(dumps({"a": float("inf"), "b": [float("-inf")], "c": float("nan")}))
    assert back["a"] == math.inf and back["b"] == [-math.inf] and math.isnan(back["c"])
    with pytest.raises(TypeError, match="x.y: None"):
        dumps({"x": {"y": None}})


def err(d) -> str:
    with pytest.raises(RecipeError) as e:
        Recipe.from_dict(d, source="my.toml")
    return str(e.value)


def test_unknown_parameter_named_by_path():
    d = recipe_dict()
    d["stages"][2]["alpha_x"] = 1
    msg = err(d)
    assert msg.startswith("my.toml: stages[2].alpha_x: unknown parameter of stage 't_scale'")
    assert "it takes: factor" in msg


def test_unknown_stage_lists_known_ones():
    d = recipe_dict()
    d["stages"][1]["type"] = "t_nope"
    msg = err(d)
    assert "stages[1].type" in msg and "unknown stage 't_nope'" in msg
    for known in ("t_add", "t_bias", "t_round", "t_scale"):
        assert known in msg


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.update(extra=1), "extra: unknown key; allowed here: name, description"),
    (lambda d: d["inputs"].update(gtt="x"), "inputs.gtt: unknown key"),
    (lambda d: d["splits"].update(fit=[1]), "splits.fit[0]: expected a string"),
    (lambda d: d["scoring"].update(protocol="coco"), "scoring.protocol: unknown protocol 'coco'"),
    (lambda d: d["scoring"].update(iou_thresholds=[0.5, 2]), "scoring.iou_thresholds[1]: expected a number in (0, 1]"),
    (lambda d: d["scoring"].update(iou_thresholds=[]), "scoring.iou_thresholds: IoU thresholds []: expected at least one"),
    (lambda d: d["scoring"].update(iou_thresholds="0.5:0:0.9"),
     "scoring.iou_thresholds: IoU thresholds '0.5:0:0.9': need step > 0 and end >= start"),
    (lambda d: d["scoring"].update(iou_thresholds="0.5:0.1"), "scoring.iou_thresholds: IoU thresholds '0.5:0.1': expected start:step:end"),
    (lambda d: d["scoring"].update(iou_thresholds="0.1:0.5:1.5"),
     "scoring.iou_thresholds: IoU thresholds '0.1:0.5:1.5': expected numbers in (0, 1], got 1.1"),
    (lambda d: d["scoring"].update(iou_thresholds="0.25,half"), "scoring.iou_thresholds: IoU thresholds '0.25,half': expected numbers"),
    (lambda d: d["scoring"].update(iou_thresholds="0,0.5"), "scoring.iou_thresholds: IoU thresholds '0,0.5': expected numbers in (0, 1], got 0.0"),
    (lambda d: d["scoring"].update(protocol="dcase2026-coco", iou_thresholds=[0.5]),
     "scoring.iou_thresholds: the dcase2026-coco protocol uses pycocotools' fixed IoU thresholds 0.50:0.05:0.95; "
     "remove iou_thresholds (or score with dcase2026)"),
    (lambda d: d["scoring"].update(protocol="dcase2026-coco", iou_thresholds="0.5:0.05:0.95"),
     "scoring.iou_thresholds: the dcase2026-coco protocol uses pycocotools' fixed IoU thresholds"),
    (lambda d: d["stages"][0].update(delta="big"), "stages[0].delta: must be a number, got 'big'"),
    (lambda d: d["stages"][0].update(enabled="no"), "stages[0].enabled: expected bool"),
    (lambda d: d["stages"][0].pop("type"), "stages[0].type: missing (required)"),
    (lambda d: d["emit"].update(digits=True), "emit.digits: must be an integer >= 0, got True"),
    (lambda d: d.pop("name"), "name: missing (required)"),
    (lambda d: d["inputs"].update(primary="zz"), "inputs.primary: 'zz' is not one of the systems ['sysA']"),
    (lambda d: d["inputs"].update(systems={}), "inputs.systems: name at least one system"),
    (lambda d: d["stages"].append({"type": "t_add"}), "stages[3]: address 't_add' is also used by stages[0]"),
    (lambda d: d["inputs"].pop("gt"), "stages[1]: stage 't_bias' needs the 'truth' table; the recipe has no inputs.gt"),
])
def test_validation_errors(mutate, expected):
    d = recipe_dict()
    mutate(d)
    assert expected in err(d)


def test_threshold_string_kept_as_written_and_checked_at_load(tmp_path):
    d = recipe_dict()
    d["scoring"] = {"iou_thresholds": "0.5:0.05:0.95"}
    r = Recipe.from_dict(d)
    assert r.scoring.iou_thresholds == "0.5:0.05:0.95" and r.to_dict()["scoring"]["iou_thresholds"] == "0.5:0.05:0.95"
    p = dump_recipe(r, tmp_path / "r.toml")
    # the coco protocol set over it (as `calib run --set scoring.protocol=...` and a grid axis do) is
    # refused when the recipe is read, naming the file and the key, before any stage runs
    doc = address.set_values(read_document(p), {"scoring.protocol": "dcase2026-coco"})
    with pytest.raises(RecipeError, match=r"r.toml: scoring.iou_thresholds: the dcase2026-coco protocol uses"):
        Recipe.from_dict(doc, source=str(p))


def test_disabled_stage_needs_no_input():
    d = recipe_dict()
    d["inputs"].pop("gt")
    d["stages"][1]["enabled"] = False
    assert Recipe.from_dict(d).stages[1].enabled is False


def test_parse_errors_name_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("name = \n")
    with pytest.raises(RecipeError, match=r"bad.toml: not valid TOML"):
        load_recipe(p)
    with pytest.raises(RecipeError, match="not a shipped recipe"):
        load_recipe(tmp_path / "missing.toml")


def test_addresses():
    d = recipe_dict()
    assert address.parse("stages[2].k") == ["stages", 2, "k"]
    new = address.set_values(d, {"stages.t_scale.factor": 3, "stages.t_bias.enabled": False, "emit.digits": 1,
                                 "stages[0].delta": 0.5, "splits.fit": ["dev-test-tau"]})
    r = Recipe.from_dict(new)
    assert r.stages[2].params == {"factor": 3} and r.stages[1].enabled is False and r.emit.params == {"digits": 1}
    assert r.stages[0].params == {"delta": 0.5} and r.splits.fit == ["dev-test-tau"]
    assert d["stages"][2]["factor"] == 0.5  # the original is not touched
    with pytest.raises(RecipeError, match="no stage with address 'cap'; stages are: t_add, t_bias, t_scale"):
        address.set_values(d, {"stages.cap.k": 1})
    with pytest.raises(RecipeError, match=r"stages\[1\].nope: unknown parameter"):
        Recipe.from_dict(address.set_values(d, {"stages.t_bias.nope": 1}))
    assert address.parse_assignment("stages.cap.k=3") == ("stages.cap.k", 3)
    assert address.parse_assignment("inputs.gt = data/gt") == ("inputs.gt", "data/gt")
    assert address.parse_assignment("splits.fit=[\"a\", \"b\"]") == ("splits.fit", ["a", "b"])
