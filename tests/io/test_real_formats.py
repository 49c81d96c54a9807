"""Real-world input shapes (issue #19), written by the tests in the layouts real tools use.

SELD CSVs: STARSS22/23 metadata (frame,class,source,azimuth,elevation; integers; no header),
DCASE 2024 polar with distance in cm, Cartesian SELD outputs whose multi-ACCDOA vectors are not
unit length (norms 0.5-0.83). DCASE JSON as the baseline / SAID / the label generator write it:
``<seq>_inference.json`` names, ``indent=2``, extra top-level keys, string class ids, null
distance / instance_id, GT objects repeated across the seam. Every expected number is hand-computed
(canvas x = (-azimuth + 180) mod 360, y = 90 - elevation).
"""
import json

import pytest

from calib.cli.main import main
from calib.io.dcase import read_file, read_predictions, read_truth
from calib.io.errors import InputError
from calib.io.jsonfile import _fast_columns, parse_columns
from calib.io.seld import DESCRIPTIONS, read_teacher_file, read_teachers
from calib.tables import read_table, table_clips

# STARSS23-style metadata rows: frame, class, source, azimuth, elevation (integers)
STARSS = "0,1,0,-170,20\n0,8,1,45,-10\n3,12,0,180,0\n"


def _row_dict(df, i=0):
    return df.row(i, named=True)


def test_starss_metadata_five_columns(tmp_path):
    p = tmp_path / "fold4_room23_mix001.csv"
    p.write_text(STARSS)
    df = read_teacher_file(p)
    assert df.height == 3
    assert df.get_column("track").to_list() == [0, 1, 0]  # source = track
    assert df.get_column("azimuth").to_list() == [-170.0, 45.0, 180.0]
    assert df.get_column("elevation").to_list() == [20.0, -10.0, 0.0]
    assert df.get_column("x").to_list() == [350.0, 135.0, 0.0]  # (-az + 180) mod 360
    assert df.get_column("y").to_list() == [70.0, 100.0, 90.0]  # 90 - el
    assert df.get_column("distance").to_list() == [None, None, None]
    assert df.get_column("frame").to_list() == [0, 0, 3] and df.get_column("class_id").to_list() == [1, 8, 12]


def test_dcase2024_polar_with_distance(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("0,1,0,-170,20,250\n1,2,3,90,0,87\n")
    df = read_teacher_file(p)
    assert df.get_column("distance").to_list() == [250.0, 87.0]
    assert df.get_column("x").to_list() == [350.0, 90.0] and df.get_column("track").to_list() == [0, 3]


# multi-ACCDOA directions with norms 0.6, 0.707 and 0.83: azimuth 90 / elevation 0, azimuth 0 /
# elevation 45, azimuth 180 / elevation 0 -> canvas (90, 90), (180, 45), (0, 90)
VECTORS = [(0.0, 0.6, 0.0), (0.5, 0.0, 0.5), (-0.83, 0.0, 0.0)]
EXPECT_XY = [(90.0, 90.0), (180.0, 45.0), (0.0, 90.0)]


@pytest.mark.parametrize("layout, row", [
    ("cart5", lambda f, v: f"{f},4,{v[0]},{v[1]},{v[2]}"),
    ("cart6", lambda f, v: f"{f},4,{f % 2},{v[0]},{v[1]},{v[2]}"),
    ("cart7", lambda f, v: f"{f},4,{f % 2},{v[0]},{v[1]},{v[2]},150"),
])
def test_cartesian_vectors_that_are_not_unit_length(tmp_path, layout, row):
    p = tmp_path / "clip.csv"
    p.write_text("".join(row(f, v) + "\n" for f, v in enumerate(VECTORS)))
    got = read_teachers([p])
    assert got.notes == [f"read 1 teacher file(s) as {layout} ({DESCRIPTIONS[layout]}), detected from the columns and values"]
    assert got.table.get_column("x").to_list() == pytest.approx([x for x, _ in EXPECT_XY], abs=1e-9)
    assert got.table.get_column("y").to_list() == pytest.approx([y for _, y in EXPECT_XY], abs=1e-9)
    assert got.table.get_column("azimuth").to_list() == pytest.approx([90.0, 0.0, 180.0], abs=1e-9)
    assert got.table.get_column("elevation").to_list() == pytest.approx([0.0, 45.0, 0.0], abs=1e-9)


def test_teacher_folder_with_split_subfolders_and_cli_says_the_layout(tmp_path, capsys):
    root = tmp_path / "metadata_dev"
    (root / "dev-test-tau").mkdir(parents=True)
    (root / "dev-train-sony").mkdir()
    (root / "dev-test-tau" / "fold4_room2_mix001.csv").write_text(STARSS)
    (root / "dev-train-sony" / "fold3_room21_mix005.csv").write_text("5,0,2,10,-5\n")
    got = read_teachers([root])
    assert got.clips == {"fold4_room2_mix001": "dev-test-tau", "fold3_room21_mix005": "dev-train-sony"}
    assert got.table.height == 4
    out = tmp_path / "t.parquet"
    assert main(["ingest", str(root), "--teacher", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "read 2 teacher file(s) as polar5 (frame, class, source, azimuth, elevation (STARSS22/23 metadata))" in printed
    assert read_table(out, "teacher").height == 4


@pytest.mark.parametrize("text, fmt, words", [
    ("0,1,0,-170,20,-5\n", "auto", ["row 0", "negative distance -5.0"]),
    ("0,1,0,0.5,0.5,0.5,-1\n", "auto", ["row 0", "negative distance -1.0"]),
    ("0,1,0,0,0\n", "cart5", ["row 0", "(0, 0, 0) has no direction"]),
    ("0,1,0,-170,20\n", "cart5", ["row 0", "not a Cartesian direction"]),
    ("0,1,0.5,-170,20\n", "auto", ["row 0", "track (source) 0.5"]),
    ("0,1,0,400,20\n", "auto", ["row 0", "azimuth 400.0 outside"]),
])
def test_bad_teacher_rows_are_named(tmp_path, text, fmt, words):
    p = tmp_path / "c.csv"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        read_teachers([p], fmt)
    for w in [str(p)] + words:
        assert w in str(e.value), (w, str(e.value))


def test_two_teacher_files_for_one_clip_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.csv").write_text(STARSS)
    (tmp_path / "b" / "x.csv").write_text(STARSS)
    with pytest.raises(InputError, match=r"second teacher file for clip 'x'"):
        read_teachers([tmp_path])


# ---------------------------------------------------------------------------------------------- JSON
PRED = {"metadata_frame_index": 0, "category_id": 1, "score": 0.5, "segmentation": [[[10, 20, 1.0], [11, 20, 0.5]]]}


def test_baseline_names_indent_2_and_extra_top_level_keys(tmp_path):
    d = tmp_path / "baseline"
    d.mkdir()
    doc = {"info": {"model": "SELDnet", "version": 3}, "annotations": [PRED, dict(PRED, metadata_frame_index=4)]}
    (d / "fold4_room1_mix001_inference.json").write_text(json.dumps(doc, indent=2))
    (d / "fold4_room1_mix002_inference.json").write_text(json.dumps({"annotations": []}, indent=2))
    data = (d / "fold4_room1_mix001_inference.json").read_bytes()
    assert _fast_columns(data) is not None  # indent=2 and extra top-level keys stay on the fast path
    got = read_predictions([d])
    assert got.clips == {"fold4_room1_mix001": "", "fold4_room1_mix002": ""}
    assert got.table.get_column("clip").to_list() == ["fold4_room1_mix001"] * 2
    assert got.table.get_column("frame").to_list() == [0, 4]
    assert got.table.get_column("system").unique().to_list() == ["baseline"]


def test_nulls_string_classes_and_repeated_gt_objects(tmp_path, capsys):
    gt = tmp_path / "gt" / "dev-test-sony"
    gt.mkdir(parents=True)
    left = [[0.0, 90.0, 1.0], [1.0, 90.0, 0.5], [0.0, 91.0, 0.5]]
    right = [[359.0, 90.0, 0.8], [358.0, 90.0, 0.4], [359.0, 91.0, 0.4]]
    anns = [  # one object across the seam written once per contour (the label generator's way)
        {"metadata_frame_index": 2, "instance_id": 7, "category_id": "3", "segmentation": [left], "distance": None},
        {"metadata_frame_index": 2, "instance_id": 7, "category_id": "3", "segmentation": [right], "distance": None},
        {"metadata_frame_index": 2, "instance_id": None, "category_id": 5, "segmentation": [left]},
    ]
    (gt / "fold4_room1_mix001_std.json").write_text(json.dumps({"annotations": anns, "video": "x.mp4"}, indent=2))
    got = read_truth(tmp_path / "gt")
    t = got.table
    assert t.get_column("class_id").to_list() == [3, 3, 5]
    assert t.get_column("category_str").to_list() == [True, True, False]
    assert t.get_column("distance").to_list() == [None, None, None]
    assert t.get_column("instance_id").to_list() == [7, 7, None]
    assert got.notes == ["1 GT annotation(s) repeat an object (same clip, frame, class and instance_id) in 1 clip(s); "
                         "kept, as the official scorers count each (first: clip fold4_room1_mix001, frame 2, class 3, "
                         "instance 7, 2 times)"]
    # the same file through the scorer's reader: all three kept
    from calib.score import load_file

    assert [a.class_id for a in load_file(gt / "fold4_room1_mix001_std.json", "gt")] == [3, 3, 5]
    out = tmp_path / "truth.parquet"
    assert main(["ingest", str(tmp_path / "gt"), "--truth", "--out", str(out), "--quiet"]) == 0
    assert "1 GT annotation(s) repeat an object" in capsys.readouterr().out


def test_fast_and_general_paths_agree_on_nulls(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"annotations": [dict(PRED, distance=None, instance_id=None), dict(PRED, distance=120.5, instance_id=3)]}))
    a, _ = read_file(p, "pred")
    b, _ = read_file(p, "pred", fast=False)
    assert a.equals(b)
    assert a.get_column("distance").to_list() == [None, 120.5] and a.get_column("instance_id").to_list() == [None, 3]
    assert parse_columns(p, p.read_bytes()).n == 2
