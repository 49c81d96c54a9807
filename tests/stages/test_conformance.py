"""One suite over every registered stage (scikit-learn's estimator checks, for calib stages).

For each stage built with its default parameters: the recipe round trip (to_dict -> make_stage)
gives equal parameters; __init__ stores parameters only; fit returns self; apply leaves its input
unchanged, adds the columns it declares, is deterministic, and accepts empty detections.
"""
from __future__ import annotations

import inspect

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from calib.stages.base import Stage, Tables, get_stage, make_stage, registry

STAGES = sorted(registry())


@pytest.fixture(scope="module")
def tables(conformance_tables) -> Tables:
    return conformance_tables


def _fitted(cls, tables):
    stage = cls()
    out = stage.fit(tables)
    assert out is stage, f"{cls.name}.fit must return self"
    return stage


def _frames(t: Tables) -> dict:
    out = {}
    for k, v in t.items():
        if isinstance(v, pl.DataFrame):
            out[k] = v.clone()
        elif isinstance(v, dict):
            out[k] = {n: d.clone() for n, d in v.items()}
    return out


@pytest.mark.parametrize("name", STAGES)
def test_params_round_trip(name):
    cls = get_stage(name)
    stage = cls()
    spec = stage.to_dict()
    assert spec["type"] == name
    rebuilt = make_stage(spec)
    assert rebuilt.get_params() == stage.get_params()
    assert stage.clone().get_params() == stage.get_params()
    assert set(cls.param_names()) == set(cls.param_defaults()), "every parameter has a default"
    # parameters are stored under their own names and nothing learned exists before fit
    assert not [a for a in vars(stage) if a.endswith("_") and not a.startswith("_")], "learned state before fit"
    doc = inspect.getdoc(cls)
    assert doc and len(doc.splitlines()[0]) > 10, "a docstring saying what the stage does"


@pytest.mark.parametrize("name", STAGES)
def test_apply_is_pure_and_deterministic(name, tables):
    cls = get_stage(name)
    before = _frames(tables)
    stage = _fitted(cls, tables)
    a = stage.apply(tables)
    b = stage.apply(tables)
    after = _frames(tables)
    for k in before:
        if isinstance(before[k], dict):
            for n in before[k]:
                assert_frame_equal(before[k][n], after[k][n])
        else:
            assert_frame_equal(before[k], after[k])
    assert isinstance(a, Tables)
    assert_frame_equal(a["detections"], b["detections"])
    for col in cls.adds_columns:
        assert col in a["detections"].columns, f"{name} declares it adds {col!r}"


@pytest.mark.parametrize("name", STAGES)
def test_empty_detections(name, tables):
    cls = get_stage(name)
    stage = _fitted(cls, tables)
    empty = tables.replace(detections=tables["detections"].clear())
    if "systems" in tables:
        empty = empty.replace(systems={k: v.clear() for k, v in tables["systems"].items()})
    out = stage.apply(empty)
    assert out["detections"].height == 0
    for col in ("clip", "frame", "class_id", "score", "points"):
        assert col in out["detections"].columns


# ----------------------------------------------------------------------------------------------
# Gated wrappers (calib.stages.gate) of a few stages through the same checks: a row-keeping
# selection, a relabeling, a fusion from the systems and a stage that learns; per class and global.
GATED = {
    "cap/per_class": {"type": "cap", "per_class": 1, "gate": "per_class"},
    "teacher_relabel/per_class": {"type": "teacher_relabel", "gate": "per_class"},
    "max_envelope/per_class": {"type": "max_envelope", "gate": "per_class"},
    "class_filter/global": {"type": "class_filter", "k": 3, "gate": "global"},
}


@pytest.fixture(scope="module")
def fitted_gates(conformance_tables) -> dict:
    """Each gated wrapper fit once (the cross-fitting scores the held-out folds)."""
    from calib.stages.gate import build_stage

    out = {}
    for key, entry in GATED.items():
        stage = build_stage(entry)
        assert stage.fit(conformance_tables) is stage, f"{key}: fit must return self"
        out[key] = stage
    return out


@pytest.mark.parametrize("key", sorted(GATED))
def test_gated_params_round_trip(key):
    from calib.stages.gate import GatedStage, build_stage

    stage = build_stage(GATED[key], scoring={"protocol": "dcase2026"})
    assert isinstance(stage, GatedStage)
    entry = stage.to_dict()
    assert {k: v for k, v in entry.items() if not k.startswith("gate_")} == GATED[key]
    assert build_stage(entry, scoring=stage.scoring).get_params() == stage.get_params()
    assert stage.clone().get_params() == stage.get_params()
    assert not [a for a in vars(stage) if a.endswith("_") and not a.startswith("_")], "learned state before fit"


@pytest.mark.parametrize("key", sorted(GATED))
def test_gated_apply_is_pure_and_deterministic(key, tables, fitted_gates):
    stage = fitted_gates[key]
    blind = Tables({k: v for k, v in tables.items() if k != "truth"})
    before = _frames(tables)
    a = stage.apply(blind)
    b = stage.apply(blind)
    after = _frames(tables)
    for k in before:
        if isinstance(before[k], dict):
            for n in before[k]:
                assert_frame_equal(before[k][n], after[k][n])
        else:
            assert_frame_equal(before[k], after[k])
    assert isinstance(a, Tables)
    assert_frame_equal(a["detections"], b["detections"])
    if stage.kept_classes_:  # rows of the stage's output are in: its columns are there
        for col in stage.adds_columns:
            assert col in a["detections"].columns, f"{key} declares it adds {col!r}"
    det = a["detections"]
    assert not det.select(pl.struct("clip", "det_id").is_duplicated().any()).item(), "det_id unique per clip"
    assert det.get_column("system").n_unique() <= 1
    kept = set(stage.kept_classes_)
    if stage.wrapped_class().needs_tables[0] == "detections":  # rows of classes not kept pass as they came
        inp = tables["detections"].filter(~pl.col("class_id").is_in(sorted(kept)))
        got = det.filter(~pl.col("class_id").is_in(sorted(kept)))
        assert_frame_equal(got.select(inp.columns), inp, check_row_order=False)


@pytest.mark.parametrize("key", sorted(GATED))
def test_gated_empty_detections(key, tables, fitted_gates):
    stage = fitted_gates[key]
    empty = tables.replace(detections=tables["detections"].clear())
    if "systems" in tables:
        empty = empty.replace(systems={k: v.clear() for k, v in tables["systems"].items()})
    out = stage.apply(empty)
    assert out["detections"].height == 0
    for col in ("clip", "frame", "class_id", "score", "points"):
        assert col in out["detections"].columns


@pytest.mark.parametrize("key", sorted(GATED))
def test_gated_state_round_trips_through_disk(key, tables, fitted_gates, tmp_path):
    from calib.recipe.state import load_state, save_state
    from calib.stages.gate import build_stage

    stage = fitted_gates[key]
    save_state(stage, tmp_path / "state")
    back = load_state(build_stage(GATED[key]), tmp_path / "state")
    assert back.kept_classes_ == stage.kept_classes_
    assert_frame_equal(back.decision_table_, stage.decision_table_)
    blind = Tables({k: v for k, v in tables.items() if k != "truth"})
    assert_frame_equal(back.apply(blind)["detections"], stage.apply(blind)["detections"])


# ----------------------------------------------------------------------------------------------
# Every parameter of every registered stage is declared (type, default, constraint, unit, meaning),
# and the recipe loader rejects a bad value of each kind with the recipe key named.
def test_every_parameter_is_declared_with_a_meaning():
    from calib.params import Param
    from calib.stages.gate import GATE_KEYS

    tables = {name: get_stage(name).PARAMS for name in STAGES} | {"gate keys": GATE_KEYS}
    for name, params in tables.items():
        if name != "gate keys":
            sig = [p for p in inspect.signature(get_stage(name).__init__).parameters if p != "self"]
            assert sig == list(params), f"{name}: __init__ and PARAMS differ"
        for key, p in params.items():
            assert isinstance(p, Param), (name, key)
            meaning = p.meaning.strip()
            assert meaning and "\n" not in meaning and len(meaning) > 10, f"{name}.{key}: a one-line meaning"
            assert p.problem(p.default) is None, f"{name}.{key}: the default {p.default!r} breaks its own rule"


def _bad_values(p) -> list:
    """Values the declaration ``p`` must reject, one per kind of rule it has."""
    types = p.types
    bad = []
    if p.choices is not None:
        bad.append("not-one-of-them")
    elif bool in types:
        bad.append("yes")
    elif int in types and float not in types:
        bad += [1.5, True]
    elif float in types:
        bad += ["1.0", False]
    elif str in types:
        bad.append(12345)
    elif list in types or dict in types:
        bad.append(3)
    for key, delta in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
        bound = getattr(p, key)
        if bound is not None:
            bad.append(bound + delta if int in types and float not in types else float(bound + delta * 0.5))
    if p.item is not None and list in types:
        bad.append([{"not": "an item"}])
    if p.keys == "class":
        bad.append({"13": 1})
    return bad


def _recipe_with(entry: dict) -> dict:
    return {"name": "params", "inputs": {"gt": "gt", "teacher": "teacher", "priors": "priors.csv",
                                         "systems": {"a": "systems/a", "b": "systems/b"}},
            "stages": [{"type": "threshold"}, entry], "scoring": {"protocol": "dcase2026"}}


@pytest.mark.parametrize("name", STAGES)
def test_bad_values_fail_at_recipe_load_naming_the_key(name):
    from calib.recipe.schema import Recipe, RecipeError

    cls = get_stage(name)
    tried = 0
    for key, p in cls.PARAMS.items():
        for value in _bad_values(p):
            with pytest.raises(RecipeError) as e:
                Recipe.from_dict(_recipe_with({"type": name, key: value}), source="r.toml")
            assert e.value.where == f"stages[1].{key}"
            assert str(e.value).startswith(f"r.toml: stages[1].{key}: must be "), str(e.value)
            assert str(e.value) == f"r.toml: stages[1].{key}: {p.problem(value)}"
            tried += 1
    assert tried >= len(cls.PARAMS)


@pytest.mark.parametrize("entry, message", [
    ({"type": "grid", "n": 0}, "stages[1].n: must be an integer >= 1, got 0"),
    ({"type": "grid", "frac": 1.5}, "stages[1].frac: must be a number in [0, 1], got 1.5"),
    ({"type": "gaussian", "threshold": 0}, "stages[1].threshold: must be a number in (0, 1], got 0"),
    ({"type": "nms", "iou": "circle"}, "stages[1].iou: must be one of 'mask', 'box', got 'circle'"),
    ({"type": "nms", "class_agnostic": "no"}, "stages[1].class_agnostic: must be true or false, got 'no'"),
    ({"type": "threshold", "name": "t2", "per_class": {"13": 0.5}},
     "stages[1].per_class: must be a table of class id (0..12) -> numbers, got {'13': 0.5}: class 13 outside 0..12"),
    ({"type": "class_filter", "classes": [1, 13]},
     "stages[1].classes: must be a list of integers in [0, 12], got [1, 13]: item 1 (13) is not an integer in [0, 12]"),
    ({"type": "rerank", "features": 3}, "stages[1].features: must be a string or a list of strings, got 3"),
    ({"type": "cap", "gate": "global", "gate_folds": 2}, "stages[1].gate_folds: must be an integer >= 3, got 2"),
])
def test_bad_values_hand_written_messages(entry, message):
    from calib.recipe.schema import Recipe, RecipeError

    with pytest.raises(RecipeError) as e:
        Recipe.from_dict(_recipe_with(entry))
    assert str(e.value) == f"recipe: {message}"
