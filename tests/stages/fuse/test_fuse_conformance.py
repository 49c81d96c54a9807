"""The conformance properties, for each fusion stage: empty input, determinism, input left
unchanged, declared columns added, recipe (to_dict / make_stage) round trip with TOML-able
params."""
import copy

import polars as pl
import pytest
from fusedata import blob, det, priors, teacher

from calib.stages.base import Tables, get_stage, make_stage
from calib.tables import TRUTH

FUSION_STAGES = ["prior_fusion", "teacher_relabel", "teacher_count", "max_envelope", "calibrated_union",
                 "mask_fusion", "acs_views", "checkpoint_cluster"]


def _system(name, shift):
    return det([{"clip": c, "frame": f, "class_id": k, "score": 0.2 + 0.1 * f + shift, "system": name,
                 "points": blob(40.0 * k + 20 + shift * 10, 90.0)} for c in ("c1", "c2") for f in range(3)
                for k in (0, 1)])


def _truth():
    d = _system("gt", 0.0)
    return pl.DataFrame({"clip": d["clip"], "split": ["dev-test-sony"] * d.height, "frame": d["frame"],
                         "ann_id": d["det_id"], "class_id": d["class_id"], "instance_id": [None] * d.height,
                         "distance": [None] * d.height, "points": d["points"], "category_str": [False] * d.height,
                         "extra": [None] * d.height}, schema=TRUTH)


def tables(empty: bool) -> Tables:
    a, b = _system("a", 0.0), _system("b", 0.05)
    views = pl.concat([a.with_columns(pl.lit(v, pl.Int64).alias("view")) for v in range(8)])
    cps = pl.concat([a.with_columns(pl.lit(f"k{i}").alias("checkpoint")) for i in range(4)])
    t = Tables(detections=a, systems={"a": a, "b": b}, truth=_truth(),
               teacher=teacher([{"clip": "c1", "frame": 0, "class_id": 1, "azimuth": 150, "elevation": 0}]),
               priors=priors([{"clip": "c1", "start_frame": 0, "end_frame": 20, "p": {0: 0.5, 1: 0.25}}]),
               views=views, checkpoints=cps)
    if empty:
        t = Tables({k: (v.head(0) if isinstance(v, pl.DataFrame) else {n: d.head(0) for n, d in v.items()})
                    for k, v in t.items()})
    return t


def inputs(name: str, empty: bool) -> Tables:
    t = tables(empty)
    if name == "acs_views":
        t = t.replace(detections=t["views"])
    if name == "checkpoint_cluster":
        t = t.replace(detections=t["checkpoints"])
    return t


def run(name, t):
    return make_stage({"type": name}).fit_apply(t)["detections"]


def toml_able(v) -> bool:
    if isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, list):
        return all(toml_able(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and toml_able(x) for k, x in v.items())
    return False


@pytest.mark.parametrize("name", FUSION_STAGES)
def test_registered_with_toml_params_and_round_trip(name):
    cls = get_stage(name)
    stage = cls()
    assert all(toml_able(v) for v in stage.get_params().values()), stage.get_params()
    again = make_stage(stage.to_dict())
    assert type(again) is cls and again.get_params() == stage.get_params()
    assert cls.__doc__ and "declared" not in cls.__doc__


@pytest.mark.parametrize("name", FUSION_STAGES)
def test_deterministic_input_unchanged_columns_declared(name):
    t = inputs(name, empty=False)
    before = {k: (v.clone() if isinstance(v, pl.DataFrame) else {n: d.clone() for n, d in v.items()})
              for k, v in t.items()}
    keys_before = {k: (sorted(v) if isinstance(v, dict) else None) for k, v in t.items()}
    first, second = run(name, t), run(name, copy.copy(t))
    assert first.height > 0
    assert first.equals(second)
    for k, v in t.items():
        if isinstance(v, pl.DataFrame):
            assert v.equals(before[k]), k
        else:
            assert sorted(v) == keys_before[k] and all(d.equals(before[k][n]) for n, d in v.items()), k
    cls = get_stage(name)
    assert set(cls.adds_columns) <= set(first.columns)
    assert first.columns[:10] == list(pl.Schema(det([]).schema))


@pytest.mark.parametrize("name", FUSION_STAGES)
def test_empty_input_gives_empty_output_with_declared_columns(name):
    out = run(name, inputs(name, empty=True))
    assert out.height == 0
    assert set(get_stage(name).adds_columns) <= set(out.columns)
