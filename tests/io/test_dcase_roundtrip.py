"""export(ingest(files)) gives back every annotation with equal fields and values."""
import json

import numpy as np
import polars as pl
import pytest

from calib.io.dcase import dumps_clip, export_table, ingest_predictions, ingest_truth, read_file
from calib.tables import read_table, write_table


def _annotations(path):
    return json.loads(path.read_bytes())["annotations"]


@pytest.mark.parametrize("folder", ["sparse", "grid", "dense"])
def test_golden_predictions_round_trip(golden, tmp_path, folder):
    df, sources = ingest_predictions([golden / folder])
    assert set(df.get_column("system")) == {folder}
    write_table(df, tmp_path / "t.parquet", "detections", sources=sources)
    back = read_table(tmp_path / "t.parquet", "detections")
    assert back.equals(df)
    files = export_table(back, tmp_path / "out", "pred")
    assert sorted(f.name for f in files) == sorted(f.name for f in (golden / folder).glob("*.json"))
    for f in files:
        assert _annotations(f) == _annotations(golden / folder / f.name)


@pytest.mark.slow
def test_golden_truth_round_trip_keeps_string_class_ids(golden, tmp_path):
    df, _ = ingest_truth(golden / "gt")
    assert df.get_column("category_str").any(), "golden GT has string category ids"
    files = export_table(df, tmp_path / "gt", "gt")
    for f in files:
        assert _annotations(f) == _annotations(golden / "gt" / f.name)


@pytest.mark.parametrize("name", ["gt/fold4_room8_mix001_std.json", "dense/fold5_room8_mix002.json", "grid/fold4_room8_mix003.json"])
def test_fast_and_general_parsers_agree(golden, name):
    kind = "gt" if "_std" in name else "pred"
    a, ha = read_file(golden / name, kind)
    b, hb = read_file(golden / name, kind, fast=False)
    assert a.equals(b) and ha == hb


def test_hand_checkable_file(tmp_path):
    """Two polygons, a 1-point polygon, an empty polygon, ints as floats, unknown key kept."""
    anns = [
        {"metadata_frame_index": 3, "category_id": 0, "score": 0.5,
         "segmentation": [[[359.5, 10, 1.0], [0.25, 11, 0.5]], [[1e-3, 179.999999, 0.125]]], "distance": 150.0},
        {"metadata_frame_index": 0, "category_id": 12, "score": 1, "segmentation": [[], [[180, 90, 1]]],
         "my_key": {"nested": [1, 2]}},
    ]
    path = tmp_path / "clipA.json"
    path.write_text(json.dumps({"annotations": anns}))
    df, _ = read_file(path, "pred", system="s")
    assert df.get_column("frame").to_list() == [3, 0]
    assert df.get_column("det_id").to_list() == [0, 1]
    assert df.get_column("points").list.len().to_list() == [2, 2]
    first = df.get_column("points")[0].to_list()
    assert first[0] == [{"x": 359.5, "y": 10.0, "e": 1.0}, {"x": 0.25, "y": 11.0, "e": 0.5}]
    assert first[1] == [{"x": 1e-3, "y": 179.999999, "e": 0.125}]
    assert df.get_column("distance").to_list() == [150.0, None]
    back = json.loads(dumps_clip(df, "pred"))["annotations"]
    assert back == anns


def test_synthetic_round_trip(tmp_path):
    synth = pytest.importorskip("fixtures.synth")
    synth.generate(tmp_path / "data", seed=3, clips=4, frames=20)
    for sysdir in sorted((tmp_path / "data" / "systems").iterdir()):
        df, _ = ingest_predictions([sysdir])
        files = export_table(df, tmp_path / "x" / sysdir.name, "pred")
        for f in files:
            assert _annotations(f) == _annotations(sysdir / f.name)
    gt, _ = ingest_truth(tmp_path / "data" / "gt")
    assert set(gt.get_column("split")) == {"dev-train-sony", "dev-train-tau", "dev-test-sony", "dev-test-tau"}
    for f in export_table(gt, tmp_path / "gtx", "gt"):
        rel = f.relative_to(tmp_path / "gtx")
        assert _annotations(f) == _annotations(tmp_path / "data" / "gt" / rel)


def test_write_table_is_deterministic(golden, tmp_path):
    df, sources = ingest_predictions([golden / "grid"])
    write_table(df, tmp_path / "a.parquet", "detections", sources=sources)
    write_table(df, tmp_path / "b.parquet", "detections", sources=sources)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_chunked_fast_parse_equals_general_parse(golden, monkeypatch):
    import calib.io.jsonfile as jsonfile

    monkeypatch.setattr(jsonfile, "_CHUNK_BYTES", 20_000)  # many pieces, cuts inside the file
    path = golden / "dense" / "fold4_room8_mix003.json"
    assert len(jsonfile._annotation_chunks(path.read_bytes())) > 10
    a, _ = read_file(path, "pred")
    b, _ = read_file(path, "pred", fast=False)
    assert a.equals(b)


def _columns_equal(a, b) -> None:
    for f in ("frame", "category", "category_str", "score", "score_present", "ann_offsets", "poly_offsets", "xyz"):
        assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), f
    assert a.distance.equals(b.distance) and a.instance_id.equals(b.instance_id) and a.extra == b.extra


def _gt_bytes(categories, indent=None) -> bytes:
    anns = [{"metadata_frame_index": i, "instance_id": i, "category_id": c,
             "segmentation": [[[10.0 + i, 20.0, 0.5], [11.0, 21.0, 0.25], [10.0, 22.0, 1.0]]]}
            for i, c in enumerate(categories)]
    return json.dumps({"annotations": anns}, indent=indent).encode()


@pytest.mark.parametrize("indent", [None, 2])
def test_fast_path_reads_string_class_ids(indent):
    """GT files write class ids as strings of digits: the columnar path reads them (the class as
    its number, flagged), giving exactly the general path's columns."""
    from calib.io import jsonfile

    data = _gt_bytes(["3", 5, "007", "12", "0", 4], indent)
    fast = jsonfile._fast_columns(data)
    assert fast is not None, "a file with digit-string class ids takes the fast path"
    assert fast.category.tolist() == [3, 5, 7, 12, 0, 4]
    assert fast.category_str.tolist() == [True, False, True, True, True, False]
    _columns_equal(fast, jsonfile._general_columns("f.json", data))


@pytest.mark.parametrize("categories", [[" 3", 4], ["-3", 4], ["x", "3"], ["1234567", 2], [2.5, "3"], [1e1, "3"],
                                        [" 3", " 4"]])
def test_other_class_ids_go_to_the_general_path(categories):
    """Anything but a short digit string (or a number with a fraction beside a string) is read by the
    general path, which the validator's messages rely on; the columns are its columns."""
    from calib.io import jsonfile

    data = _gt_bytes(categories)
    assert jsonfile._fast_columns(data) is None
    _columns_equal(jsonfile.parse_columns("f.json", data), jsonfile._general_columns("f.json", data))


def test_dumps_clip_of_a_slice_is_that_of_its_copy(golden):
    """Export serializes clips cut from a larger table (partitions share its point buffer): a slice
    in the middle gives the bytes of the same rows copied out, polygon offsets and all."""
    df, _ = ingest_predictions([golden / "dense"])
    n = df.height
    part = df.slice(n // 3, n // 3)
    copy = pl.DataFrame(part.to_dicts(), schema=part.schema)
    assert dumps_clip(part, "pred") == dumps_clip(copy, "pred")
    assert dumps_clip(df.slice(0, 0), "pred") == b'{"annotations":[]}'
