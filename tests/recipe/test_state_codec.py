"""Learned state on disk: JSON + npz + Parquet + model text, lossless, deterministic, and read back
without unpickling or importing anything a file names (tampered files are clear errors)."""
from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal

from calib.recipe.state import STATE_FILE, StateError, load_state, read_state, save_state, write_state
from calib.stages.base import Stage, Tables, get_stage, registry


def same(a, b) -> bool:
    """Equality that also compares types, NaN with NaN, arrays and frames exactly."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, pl.DataFrame):
        assert_frame_equal(a, b)
        return True
    if isinstance(a, pl.Series):
        assert_series_equal(a, b)
        return True
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(type(k) is type(k2) for k, k2 in zip(a, b)) and all(
            same(a[k], b[k]) for k in a)
    return a == b


RICH = {
    "share_": {0: 0.75, 3: 0.25},  # class ids as keys
    "ap_": {1: math.nan, 2: 0.5, 12: math.inf, 4: -math.inf},
    "named_": {"b": [1, 2.5, None, True, "x"], "a": {"nested": (1, "two", 3.0)}},
    "dollar_": {"$float": "a key that looks like a tag"},
    "pairs_": {(1, 2): "tuple key", None: 1, 2.5: False},
    "weights_": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "ids_": np.array([3, -1, 7], dtype=np.int16),
    "names_": np.array(["sony", "tau"]),
    "complex_": np.complex128(1 + 2j),
    "count_": np.int64(5),  # stored as the equal Python int
    "table_": pl.DataFrame({"system": ["a", None], "class_id": [1, None], "score": [0.5, math.nan],
                            "points": [[{"x": 1.0, "y": 2.0}], []]}),
    "column_": pl.Series("s", [1.5, 2.5]),
    "empty_": {},
}


def test_rich_state_round_trips_losslessly(tmp_path):
    write_state(RICH, tmp_path / "s", stage_type="toy")
    back = read_state(tmp_path / "s", stage_type="toy")
    expected = dict(RICH, count_=5)
    assert list(back) == list(expected)
    for k in expected:
        assert same(back[k], expected[k]), k
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["arrays.npz", "frame-0.parquet", "frame-1.parquet", STATE_FILE]
    doc = json.loads((tmp_path / "s" / STATE_FILE).read_text())
    # readable where JSON can say it: plain objects, numbers; tags only where it cannot
    assert doc["attributes"]["share_"] == {"$dict": [[0, 0.75], [3, 0.25]]}
    assert doc["attributes"]["ap_"]["$dict"][0] == [1, {"$float": "nan"}]
    assert doc["attributes"]["named_"]["b"] == [1, 2.5, None, True, "x"]
    assert doc["attributes"]["dollar_"] == {"$dict": [["$float", "a key that looks like a tag"]]}
    assert doc["attributes"]["count_"] == 5


def test_same_state_same_bytes(tmp_path):
    write_state(RICH, tmp_path / "a", stage_type="toy")
    write_state(RICH, tmp_path / "b", stage_type="toy")
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name


@pytest.mark.parametrize("value, match", [
    (np.array([{"a": 1}], dtype=object), "Python objects cannot be stored without pickling"),
    ({1, 2}, "cannot store a set"),
    (len, "cannot store a builtin_function_or_method"),
])
def test_values_that_would_need_pickling_are_refused(tmp_path, value, match):
    with pytest.raises(TypeError, match=rf"toy\.bad_.*{match}"):
        write_state({"bad_": value}, tmp_path / "s", stage_type="toy")


def _tamper(tmp_path, attributes=None, **doc_changes):
    folder = tmp_path / "s"
    if not folder.exists():
        write_state({"classes_": [1, 2], "table_": pl.DataFrame({"a": [1]})}, folder, stage_type="toy")
    doc = json.loads((folder / STATE_FILE).read_text())
    if attributes is not None:
        doc["attributes"] = attributes
    doc.update(doc_changes)
    (folder / STATE_FILE).write_text(json.dumps(doc))
    return folder


@pytest.mark.parametrize("attributes, match", [
    ({"x_": {"$pickle": "gASV"}}, r"attributes\.x_: unknown tagged value \['\$pickle'\]"),
    ({"x_": {"$model": "os.system", "folder": "model-0"}}, "unknown model kind 'os.system'"),
    ({"x_": {"$frame": "../../../etc/passwd"}}, r"'\.\./\.\./\.\./etc/passwd' is not a file name this format uses"),
    ({"x_": {"$frame": "/etc/passwd"}}, "is not a file name this format uses"),
    ({"x_": {"$frame": "frame-7.parquet"}}, "frame-7.parquet is missing"),
    ({"x_": {"$array": "a0"}}, "arrays.npz is missing"),
    ({"x_": {"$float": "1e999"}}, r"\$float must be one of"),
    ({"x_": {"$dict": [[[1], 2]]}}, "cannot be a dict key"),
    ({"__class__": 1}, "not a learned attribute name"),
    ({"fit": 1}, "not a learned attribute name"),
])
def test_tampered_state_is_a_clear_error(tmp_path, attributes, match):
    folder = _tamper(tmp_path, attributes)
    with pytest.raises(StateError, match=match) as e:
        read_state(folder, stage_type="toy")
    assert str(e.value).startswith(str(folder / STATE_FILE))


def test_foreign_or_broken_state_files(tmp_path):
    folder = _tamper(tmp_path, stage="rerank")
    with pytest.raises(StateError, match="holds the state of a 'rerank' stage, not of 'toy'"):
        read_state(folder, stage_type="toy")
    _tamper(tmp_path, stage="toy", format="pickle")
    with pytest.raises(StateError, match="format 'pickle'"):
        read_state(folder, stage_type="toy")
    (folder / STATE_FILE).write_text("{not json")
    with pytest.raises(StateError, match="not valid JSON"):
        read_state(folder)
    (folder / STATE_FILE).unlink()
    with pytest.raises(StateError, match="no state.json"):
        read_state(folder)


def test_declared_attributes_and_types_are_checked(tmp_path):
    folder = _tamper(tmp_path)
    declared = {"classes_": list, "table_": pl.DataFrame}
    assert read_state(folder, declared=declared)["classes_"] == [1, 2]
    with pytest.raises(StateError, match=r"missing \['ap_'\], unexpected \[\]"):
        read_state(folder, declared={**declared, "ap_": dict})
    _tamper(tmp_path, attributes={"classes_": "0123", "table_": {"$frame": "frame-0.parquet"}})
    with pytest.raises(StateError, match=r"attributes\.classes_: expected list, got str"):
        read_state(folder, declared=declared)


# ----------------------------------------------------------------------------------------------
LEARNING = [name for name, cls in registry().items() if cls.learns]


def test_every_learning_stage_declares_what_it_learns():
    assert {"rerank", "class_filter", "calibrated_union", "max_envelope"} <= set(LEARNING)
    for name in LEARNING:
        assert get_stage(name).learned_attributes, f"{name} declares learned_attributes"


@pytest.fixture(scope="module")
def tables(conformance_tables) -> Tables:
    return conformance_tables


@pytest.mark.parametrize("name", LEARNING)
def test_learned_state_round_trips_through_disk(name, tables, tmp_path):
    """Fit, save, restore onto a fresh stage: same attributes, same output, and a second save of the
    restored state is byte-identical."""
    cls = get_stage(name)
    fitted: Stage = cls().fit(tables)
    learned = {k for k in vars(fitted) if k.endswith("_") and not k.startswith("_")}
    assert learned == set(cls.learned_attributes), "fit sets exactly the declared learned attributes"
    save_state(fitted, tmp_path / "a")
    restored = load_state(cls(), tmp_path / "a")
    assert_frame_equal(restored.apply(tables)["detections"], fitted.apply(tables)["detections"])
    save_state(restored, tmp_path / "b")
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
