"""SELD CSV teacher layouts and class-prior tables, with hand-computed conversions."""
import math

import numpy as np
import polars as pl
import pytest

from calib.io.errors import InputError
from calib.io.priors import priors_per_frame, read_priors
from calib.io.seld import from_canvas, read_teacher, read_teacher_file, to_canvas


def test_canvas_conversion_hand_values():
    x, y = to_canvas([0, 90, -90, 180, -180], [0, 45, -30, 90, -90])
    assert x.tolist() == [180.0, 90.0, 270.0, 0.0, 0.0]
    assert y.tolist() == [90.0, 45.0, 120.0, 0.0, 180.0]
    az, el = from_canvas(x, y)
    assert az.tolist() == [0.0, 90.0, -90.0, 180.0, 180.0]
    assert el.tolist() == [0.0, 45.0, -30.0, 90.0, -90.0]


@pytest.mark.parametrize("text, fmt, expect", [
    ("0,3,90,10\n", "polar4", dict(track=None, azimuth=90.0, elevation=10.0, distance=None, x=90.0, y=80.0)),
    ("0,3,1,-90,0,250\n", "polar6", dict(track=1, azimuth=-90.0, elevation=0.0, distance=250.0, x=270.0, y=90.0)),
    ("0,3,2,0,1,0\n", "cart6", dict(track=2, azimuth=90.0, elevation=0.0, distance=None, x=90.0, y=90.0)),
    ("0,3,2,0,0,1,120\n", "cart7", dict(track=2, azimuth=0.0, elevation=90.0, distance=120.0, x=180.0, y=0.0)),
])
def test_each_layout(tmp_path, text, fmt, expect):
    p = tmp_path / "clipZ.csv"
    p.write_text("frame,class,a,b,c,d,e\n"[: 0] + text)
    for f in ("auto", fmt):
        df = read_teacher_file(p, f)
        row = df.row(0, named=True)
        assert row["clip"] == "clipZ" and row["frame"] == 0 and row["class_id"] == 3
        for k, v in expect.items():
            assert row[k] == pytest.approx(v) if v is not None else row[k] is None, (k, row[k])


def test_header_row_is_skipped_and_bad_rows_named(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("frame,class,track,azi,ele,dist\n1,0,0,10,20,100\n2,14,0,10,20,100\n")
    with pytest.raises(InputError, match=r"c.csv: row 1: class 14"):
        read_teacher([p])
    p.write_text("1,0,0,10,95,100\n")
    with pytest.raises(InputError, match="elevation 95"):
        read_teacher([p])


def test_priors_windows_expand_to_frames(tmp_path):
    p = tmp_path / "priors.csv"
    cols = ["clip", "start_frame", "end_frame"] + [f"p_{k}" for k in range(13)]
    rows = [["a", 0, 20] + [0.5] + [0.0] * 12, ["a", 20, 25] + [0.25] + [0.0] * 12]
    pl.DataFrame(rows, schema=cols, orient="row").write_csv(p)
    df, _ = read_priors(p)
    long = priors_per_frame(df).filter(pl.col("class_id") == 0)
    assert long.height == 25
    assert long.get_column("prior").to_list() == [0.5] * 20 + [0.25] * 5


def test_priors_reject_out_of_range(tmp_path):
    p = tmp_path / "priors.csv"
    cols = ["clip", "start_frame", "end_frame"] + [f"p_{k}" for k in range(13)]
    pl.DataFrame([["a", 0, 20] + [1.5] + [0.0] * 12], schema=cols, orient="row").write_csv(p)
    with pytest.raises(InputError, match="row 0: probabilities"):
        read_priors(p)


def test_priors_refuse_unsafe_clip_names(tmp_path):
    p = tmp_path / "priors.csv"
    cols = ["clip", "start_frame", "end_frame"] + [f"p_{k}" for k in range(13)]
    rows = [["a", 0, 20] + [0.5] * 13, ["../x", 0, 20] + [0.5] * 13]
    pl.DataFrame(rows, schema=cols, orient="row").write_csv(p)
    with pytest.raises(InputError, match=r"priors.csv: row 1: unsafe clip name '\.\./x'"):
        read_priors(p)
