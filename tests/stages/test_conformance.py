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
