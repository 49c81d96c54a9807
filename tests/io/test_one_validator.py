"""One validator (issue #18.7) and crashes turned into errors (issue #18.5).

Every reader (ingest's read_file, the scorer's load_file, both parse paths) gives the same verdict
and the same message for the same bytes; what the official scorers silently skip is skipped with
a warning naming the file and the annotation; CLI errors exit 2, name the file and the record and
leave nothing behind.
"""
import json
import os
import warnings

import pytest

from calib.cli.main import main
from calib.io.dcase import read_file
from calib.io.errors import InputError, InputWarning
from calib.score import load_file

GOOD = {"metadata_frame_index": 0, "category_id": 1, "score": 0.5, "segmentation": [[[10, 20, 1.0], [11, 20, 0.5]]]}


def _doc(**changes):
    bad = dict(GOOD, **changes)
    return json.dumps({"annotations": [GOOD, bad]}, allow_nan=True)


BAD = [  # (file text, words of the one message); the bad annotation is annotation 1
    (_doc(metadata_frame_index="2"), ["metadata_frame_index '2' is not an integer frame index"]),
    (_doc(metadata_frame_index=1.5), ["metadata_frame_index 1.5 is not an integer frame index"]),
    (_doc(metadata_frame_index=-1), ["metadata_frame_index -1"]),
    (_doc(metadata_frame_index=2**70), ["metadata_frame_index 1.1805916207174113e+21", "0..2147483647"]),
    (_doc(instance_id=1.5), ["instance_id 1.5 is not an integer"]),
    (_doc(instance_id="3"), ["instance_id '3' is not an integer"]),
    (_doc(instance_id=2**70), ["instance_id 1.1805916207174113e+21 is not an integer"]),  # orjson reads it as a float
    (_doc(segmentation=[[["10", 20, 1.0], [11, 20, 0.5]]]), ["polygon 0 is not an N x 3 array of numbers", "[0]"]),
    (_doc(segmentation=[[[10, 20, 1.0], [11, True, 0.5]]]), ["polygon 0 is not an N x 3 array of numbers", "[1]"]),
    (_doc(score="0.5"), ["score is '0.5'; scores must be finite numbers"]),
    (_doc(score=True), ["score is True; scores must be finite numbers"]),
    (_doc(distance="far"), ["distance 'far' is not a number"]),
    (_doc(category_id=2.5), ["category_id 2.5 is not an integer class id"]),
    (_doc(category_id=None), ["category_id None is not an integer class id"]),
    (_doc(metadata_frame_index=None), ["metadata_frame_index None is not an integer frame index"]),
    (_doc(score=None), ["score is None; scores must be finite numbers"]),
    (_doc(distance=float("inf")), ["distance is infinite"]),
    (_doc(segmentation={"x": 1}), ["segmentation is not a list of polygons"]),
    (json.dumps({"annotations": [GOOD, [1, 2]]}), ["annotation is not an object"]),
]


@pytest.mark.parametrize("text, words", BAD)
def test_ingest_and_score_give_the_same_error(tmp_path, text, words):
    f = tmp_path / "clip.json"
    f.write_text(text)
    messages = []
    for read in (lambda: read_file(f, "pred"), lambda: read_file(f, "pred", fast=False), lambda: load_file(f, "pred"),
                 lambda: load_file(f, "pred", "dcase2026-coco")):
        with pytest.raises(InputError) as e:
            read()
        messages.append(str(e.value))
    assert len(set(messages)) == 1, messages
    assert messages[0].startswith(f"{f}: annotation 1: ")
    for w in words:
        assert w in messages[0], (w, messages[0])


def test_the_first_problem_in_file_order_is_reported(tmp_path):
    off_canvas, nan_score = dict(GOOD, segmentation=[[[400, 20, 1.0]]]), dict(GOOD, score=float("nan"))
    cases = [([GOOD, GOOD, nan_score, off_canvas, dict(GOOD, metadata_frame_index="x")],
              r"annotation 2: score is nan; scores must be finite numbers"),
             ([GOOD, off_canvas, nan_score], r"annotation 1: polygon 0 has points outside the canvas: "
                                             r"x outside \[0, 360\] at triplet\(s\) \[0\]")]
    f = tmp_path / "clip.json"
    for anns, expected in cases:
        f.write_text(json.dumps({"annotations": anns}, allow_nan=True))
        for read in (lambda: read_file(f, "pred"), lambda: load_file(f, "pred")):
            with pytest.raises(InputError, match=expected):
                read()


def test_unknown_classes_skipped_by_the_scorer_with_a_warning_refused_by_ingest(tmp_path):
    f = tmp_path / "clip.json"
    f.write_text(_doc(category_id=13))
    with pytest.warns(InputWarning) as record:
        anns = load_file(f, "pred")
    assert [a.index for a in anns] == [0]
    assert str(record[0].message) == (f"{f}: skipped 1 annotation(s) with class ids outside 0..12, as the official "
                                      "scorers do (first: annotation 1, class 13)")
    with pytest.raises(InputError, match=r"annotation 1: class id 13 outside 0..12"):
        read_file(f, "pred")
    with pytest.warns(InputWarning, match=r"dropped 1 annotation\(s\) with class ids outside 0..12 \(first: annotation 1"):
        df, _ = read_file(f, "pred", drop_unknown_classes=True)
    assert df.get_column("det_id").to_list() == [0]


def test_string_category_ids_are_read_alike(tmp_path):
    f = tmp_path / "clip_std.json"
    f.write_text(json.dumps({"annotations": [dict(GOOD, category_id="7")]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [a.class_id for a in load_file(f, "gt")] == [7]
        assert read_file(f, "gt")[0].get_column("class_id").to_list() == [7]


# ---------------------------------------------------------------------------------------------- CLI
def _folder(tmp_path, name="clip1.json", text=None):
    d = tmp_path / "preds"
    d.mkdir(exist_ok=True)
    if text is not None:
        (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return d


def _gt(tmp_path, clip="clip1"):
    g = tmp_path / "gt"
    g.mkdir(exist_ok=True)
    (g / f"{clip}_std.json").write_text(json.dumps({"annotations": [dict(GOOD, category_id=1)]}))
    return g


def _fails_cleanly(tmp_path, capsys, argv, words):
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    for w in words:
        assert w in err, (w, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary file


CRASHES = [  # (file name, bytes, words): each once crashed ingest or score
    ("clip1.json", b'{"annotations": [' + b"[" * 200_000 + b"]" * 200_000 + b"]}", ["clip1.json", "nested too deeply"]),
    ("clip1.json", b'{"annotations": [' + b"[" * 5_000 + b"]" * 5_000 + b"]}", ["clip1.json", "nested too deeply"]),
    ("clip1.json", b'{"annotations": [{"metadata_frame_index": 0, "category_id": 1, "score": 0.5, '
                   b'"segmentation": [], "k\xff": 1}]}', ["clip1.json", "not UTF-8", "0xff"]),
    ("clip1.json", ('{"annotations": [{"metadata_frame_index": %d, "category_id": 1, "score": 0.5, '
                    '"segmentation": [[[1, 2, 3]]]}]}' % 2**70).encode(), ["clip1.json", "annotation 0", "metadata_frame_index"]),
]


@pytest.mark.parametrize("name, data, words", CRASHES)
def test_crashes_are_input_errors(tmp_path, capsys, name, data, words):
    d = _folder(tmp_path, name, data)
    gt = _gt(tmp_path)
    _fails_cleanly(tmp_path, capsys, ["ingest", str(d), "--out", str(tmp_path / "t.parquet"), "--quiet"], words)
    _fails_cleanly(tmp_path, capsys, ["score", str(d), str(gt), "--out", str(tmp_path / "m.json")], words)


@pytest.mark.parametrize("make, words", [
    (lambda d: (d / "clip1.json").mkdir(), ["clip1.json", "is a folder, not a JSON file"]),
    (lambda d: (os.symlink("b.json", d / "clip1.json"), os.symlink("clip1.json", d / "b.json")),
     ["symbolic link loop"]),
    (lambda d: os.symlink("nowhere.json", d / "clip1.json"), ["clip1.json", "broken symbolic link"]),
])
def test_folders_and_bad_links_named_json_are_errors(tmp_path, capsys, make, words):
    d = _folder(tmp_path)
    make(d)
    gt = _gt(tmp_path)
    _fails_cleanly(tmp_path, capsys, ["ingest", str(d), "--out", str(tmp_path / "t.parquet"), "--quiet"], words)
    _fails_cleanly(tmp_path, capsys, ["score", str(d), str(gt)], words)
    (gt / "x_std.json").mkdir()  # the same on the GT side
    good = tmp_path / "good"
    good.mkdir()
    (good / "clip1.json").write_text(json.dumps({"annotations": [GOOD]}))
    _fails_cleanly(tmp_path, capsys, ["score", str(good), str(gt)], ["x_std.json", "is a folder"])


def test_truncated_parquet_given_to_export(tmp_path, capsys):
    d = _folder(tmp_path, text=json.dumps({"annotations": [GOOD]}))
    table = tmp_path / "t.parquet"
    assert main(["ingest", str(d), "--out", str(table), "--quiet"]) == 0
    data = table.read_bytes()
    table.write_bytes(data[: len(data) // 2])
    _fails_cleanly(tmp_path, capsys, ["export", str(table), "--out", str(tmp_path / "out")],
                   ["t.parquet", "not a readable Parquet file"])
    table.write_bytes(data[:100] + b"\0" * 300 + data[400:])  # footer intact, pages broken
    _fails_cleanly(tmp_path, capsys, ["export", str(table), "--out", str(tmp_path / "out")],
                   ["t.parquet", "not a readable Parquet file"])


@pytest.mark.parametrize("change", [dict(metadata_frame_index="2"), dict(instance_id=1.5),
                                    dict(segmentation=[[["10", 20, 1.0]]])])
def test_score_refuses_what_ingest_refuses(tmp_path, capsys, change):
    d = _folder(tmp_path, text=_doc(**change))
    gt = _gt(tmp_path)
    msg = f"{d / 'clip1.json'}: annotation 1: "
    _fails_cleanly(tmp_path, capsys, ["ingest", str(d), "--out", str(tmp_path / "t.parquet"), "--quiet"], [msg])
    _fails_cleanly(tmp_path, capsys, ["score", str(d), str(gt)], [msg])


def test_score_skips_unknown_classes_but_says_so(tmp_path):
    import subprocess
    import sys

    d = _folder(tmp_path, text=_doc(category_id=13))
    gt = _gt(tmp_path)
    run = subprocess.run([sys.executable, "-m", "calib", "score", str(d), str(gt)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (f"calib score: warning: {d / 'clip1.json'}: skipped 1 annotation(s) with class ids outside 0..12, "
            "as the official scorers do (first: annotation 1, class 13)\n") in run.stderr


def test_two_files_for_one_clip_refused_by_ingest_and_score(tmp_path, capsys):
    d = _folder(tmp_path, "clip1.json", json.dumps({"annotations": [GOOD]}))
    (d / "clip1_inference.json").write_text(json.dumps({"annotations": [GOOD]}))
    gt = _gt(tmp_path)
    words = ["clip1.json", "clip1_inference.json", "names clip 'clip1'"]
    _fails_cleanly(tmp_path, capsys, ["ingest", str(d), "--out", str(tmp_path / "t.parquet"), "--quiet"], words)
    for protocol in ("dcase2026", "dcase2026-coco"):
        _fails_cleanly(tmp_path, capsys, ["score", str(d), str(gt), "--protocol", protocol], words)


def test_inference_names_are_scored_and_no_match_is_an_error(tmp_path, capsys):
    root = tmp_path / "metadata_dev"
    (root / "dev-test-sony").mkdir(parents=True)
    (root / "dev-test-sony" / "clip1_std.json").write_text(json.dumps({"annotations": [GOOD]}))
    (root / "dev-test-sony" / "clip9_std.json").write_text(json.dumps({"annotations": [GOOD]}))
    d = _folder(tmp_path, "clip1_inference.json", json.dumps({"annotations": [GOOD]}))
    out = tmp_path / "m.json"
    assert main(["score", str(d), str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert json.loads(out.read_text())["macro_mAP"] == 1.0  # the prediction is the GT itself
    assert "not scored: 1 GT clip(s) without a prediction file, as the official scripts do: clip9" in printed
    out.unlink()
    (d / "clip1_inference.json").rename(d / "other_inference.json")
    _fails_cleanly(tmp_path, capsys, ["score", str(d), str(root), "--out", str(out)],
                   ["no prediction file matches a ground-truth file", "<seq>.json or <seq>_inference.json",
                    "<seq>_std.json", "other_inference.json", "clip1_std.json"])
