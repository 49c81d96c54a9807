"""Bad input is refused with the file, annotation and triplets named; folder rules of each protocol."""
from __future__ import annotations

import json
import math

import polars as pl
import pytest

from calib.io.errors import InputWarning
from calib.score import Annotation, ScoreInputError, load_dir, load_file, pair_files, score_tables

GOOD = {"metadata_frame_index": 0, "category_id": 1, "score": 0.5, "segmentation": [[[10, 10, 1], [20, 10, 1], [20, 20, 1]]]}


def write(path, doc) -> None:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))


def ann(**over):
    return {**GOOD, **over}


@pytest.mark.parametrize("doc, words", [
    ('{"annotations": [', ["truncated JSON"]),
    ("[]", ["not a DCASE file", '"annotations" list']),
    ({"annotations": [ann(), ann(segmentation=[[[1, 2], [3, 4, 5]]])]}, ["annotation 1", "polygon 0", "[0]"]),
    ({"annotations": [ann(segmentation=[[[1, 2, 3, 4]]])]}, ["annotation 0", "polygon 0", "N x 3"]),
    ({"annotations": [ann(), ann(), ann(segmentation=[[[10, 10, 1], [361, 5, 1], [-1, 5, 1]]])]},
     ["annotation 2", "x outside [0, 360]", "[1, 2]"]),
    ({"annotations": [ann(segmentation=[[[10, 181, 1]]])]}, ["annotation 0", "y outside [0, 180]", "[0]"]),
    ('{"annotations": [{"metadata_frame_index": 0, "category_id": 1, "score": NaN, "segmentation": []}]}',
     ["annotation 0", "score is nan; scores must be finite numbers"]),
    ('{"annotations": [{"metadata_frame_index": 0, "category_id": 1, "score": Infinity, "segmentation": []}]}',
     ["annotation 0", "score is inf; scores must be finite numbers"]),
    ({"annotations": [ann(score="high")]}, ["annotation 0", "score"]),
    ({"annotations": [{"metadata_frame_index": 0, "category_id": 1, "score": 0.5}]}, ["annotation 0", "segmentation"]),
    ({"annotations": [ann(category_id="one")]}, ["annotation 0", "category_id"]),
])
def test_bad_prediction_files_name_the_record(tmp_path, doc, words):
    f = tmp_path / "clip.json"
    write(f, doc)
    with pytest.raises(ScoreInputError) as e:
        load_file(f, "pred")
    msg = str(e.value)
    assert str(f) in msg
    for w in words:
        assert w in msg, (w, msg)


def test_prediction_file_over_20_mib_is_refused_by_dcase2026_only(tmp_path):
    f = tmp_path / "big.json"
    write(f, json.dumps({"annotations": [GOOD]}) + " " * (20 * 1024 * 1024))
    with pytest.raises(ScoreInputError, match="20 MiB"):
        load_file(f, "pred", "dcase2026")
    assert len(load_file(f, "pred", "dcase2026-coco")) == 1


def test_string_category_and_classes_outside_0_12(tmp_path):
    f = tmp_path / "a_std.json"
    write(f, {"annotations": [ann(category_id="3"), ann(category_id=13), ann(category_id=-1)]})
    with pytest.warns(InputWarning, match=r"a_std.json: skipped 2 annotation\(s\) with class ids outside 0..12, "
                      r"as the official scorers do \(first: annotation 1, class 13\)"):
        anns = load_file(f, "gt")
    assert [a.class_id for a in anns] == [3] and anns[0].index == 0 and math.isnan(anns[0].score)


def test_folder_rules(tmp_path):
    """One naming rule for both protocols: <seq>.json or <seq>_inference.json; GT <seq>_std.json
    here or one folder below; skipped and unscored clips listed; two files for one clip refused."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    (gt / "dev-test-sony").mkdir(parents=True)
    pred.mkdir()
    write(gt / "dev-test-sony" / "a_std.json", {"annotations": []})
    write(gt / "b_std.json", {"annotations": []})
    write(gt / "d_std.json", {"annotations": []})
    for name in ("a.json", "b_inference.json", "c.json", ".hidden.json"):
        write(pred / name, {"annotations": []})
    for protocol in ("dcase2026", "dcase2026-coco"):
        files = pair_files(pred, gt, protocol)
        assert [(c, f.name, g.name) for c, f, g in files.pairs] == [("a", "a.json", "a_std.json"),
                                                                   ("b", "b_inference.json", "b_std.json")]
        assert files.skipped == ["c.json"] and files.gt_only == ["d"]  # no GT: skipped; no prediction: not scored
    assert set(load_dir(gt, "gt")) == {"a", "b", "d"}
    assert list(load_dir(pred, "pred")) == ["a", "b", "c"]
    write(pred / "b.json", {"annotations": []})  # now clip b has two prediction files
    for call in (lambda: pair_files(pred, gt, "dcase2026"), lambda: pair_files(pred, gt, "dcase2026-coco"),
                 lambda: load_dir(pred, "pred")):
        with pytest.raises(ScoreInputError) as e:
            call()
        assert "b.json" in str(e.value) and "b_inference.json" in str(e.value)


def test_tables_are_checked_like_files():
    point = pl.Struct({"x": pl.Float64, "y": pl.Float64, "e": pl.Float64})
    dets = pl.DataFrame({"system": ["s", "s"], "clip": ["c", "c"], "frame": [0, 0], "det_id": [0, 1],
                         "class_id": [1, 1], "score": [0.5, float("nan")],
                         "points": [[[{"x": 1.0, "y": 1.0, "e": 1.0}]], [[{"x": 1.0, "y": 1.0, "e": 1.0}]]],
                         "distance": [None, None]},
                        schema_overrides={"points": pl.List(pl.List(point)), "distance": pl.Float64})
    truth = pl.DataFrame({"clip": ["c"], "frame": [0], "ann_id": [0], "class_id": [1],
                          "points": [[[{"x": 1.0, "y": 1.0, "e": 1.0}]]], "distance": [None]},
                         schema_overrides={"points": pl.List(pl.List(point)), "distance": pl.Float64})
    with pytest.raises(ScoreInputError, match="det_id 1: score must be a finite number"):
        score_tables(dets, truth)
    bad = dets.with_columns(pl.Series("score", [0.5, 0.4]),
                            pl.Series("points", [[[{"x": 1.0, "y": 1.0, "e": 1.0}]], [[{"x": 1.0, "y": 200.0, "e": 1.0}]]],
                                      dtype=pl.List(pl.List(point))))
    with pytest.raises(ScoreInputError, match="det_id 1: polygon 0: triplet 0"):
        score_tables(bad, truth)
    two = bad.with_columns(pl.Series("system", ["s", "t"]))
    with pytest.raises(ValueError, match="several systems"):
        score_tables(two, truth)


def test_cli_bad_input_exits_non_zero_without_output(golden, tmp_path, capsys):
    from calib.cli.main import main

    bad = tmp_path / "sub"
    bad.mkdir()
    write(bad / "fold4_room8_mix001.json", {"annotations": [ann(), ann(segmentation=[[[5, 5, 1], [5, 190, 1]]])]})
    out, matches = tmp_path / "m.json", tmp_path / "m.parquet"
    rc = main(["score", str(bad), str(golden / "gt"), "--out", str(out), "--matches", str(matches)])
    err = capsys.readouterr().err
    assert rc != 0
    assert "fold4_room8_mix001.json" in err and "annotation 1" in err and "[1]" in err
    assert not out.exists() and not matches.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["sub"]  # no temporary file left behind


def test_annotation_dataclass_is_frozen():
    a = Annotation(frame=1, class_id=2, score=0.5, polygons=(), index=3)
    with pytest.raises(AttributeError):
        a.frame = 2
