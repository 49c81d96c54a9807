"""Nothing lost (issue #18.3): a clip whose file has no annotation stays a clip through
ingest -> Parquet -> export -> score, and clip names are checked wherever they become paths."""
import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from calib.cli.main import main
from calib.io.dcase import export_table, read_predictions
from calib.io.errors import InputError
from calib.score import score
from calib.tables import metadata, read_table, table_clips, write_table

TINY = Path(__file__).resolve().parents[2] / "fixtures" / "tiny"


@pytest.fixture()
def two_clips(tmp_path):
    """GT for clips 'tiny' and 'tiny2' (the same annotations); predictions: tiny.json as shipped,
    tiny2.json an empty annotation list (a system that found nothing there)."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    shutil.copy(TINY / "gt" / "tiny_std.json", gt / "tiny_std.json")
    shutil.copy(TINY / "gt" / "tiny_std.json", gt / "tiny2_std.json")
    shutil.copy(TINY / "pred" / "tiny.json", pred / "tiny.json")
    (pred / "tiny2.json").write_text('{"annotations": []}')
    return pred, gt


def _metrics(pred, gt):
    m = score(str(pred), str(gt), engine="reference", with_matches=False)
    return {k: m[k] for k in ("macro_mAP", "micro_mAP", "macro_AP_per_thr", "micro_pearson_n")}


def test_ingest_export_score_keeps_the_empty_clip(two_clips, tmp_path, capsys):
    pred, gt = two_clips
    original = _metrics(pred, gt)
    without = tmp_path / "without"
    shutil.copytree(pred, without)
    (without / "tiny2.json").unlink()
    # the empty file matters: without it tiny2's GT is not scored and the metrics rise
    assert _metrics(without, gt)["micro_mAP"] > original["micro_mAP"]

    table, out = tmp_path / "t.parquet", tmp_path / "exported"
    assert main(["ingest", str(pred), "--out", str(table), "--quiet"]) == 0
    assert "2 clips (1 without rows, kept)" in capsys.readouterr().out
    assert table_clips(table) == {"tiny": "", "tiny2": ""}
    assert main(["export", str(table), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tiny.json", "tiny2.json"]
    assert json.loads((out / "tiny2.json").read_bytes()) == {"annotations": []}
    assert _metrics(out, gt) == original
    # scoring the table itself counts the empty clip as its file does
    assert main(["score", str(table), str(gt), "--engine", "reference", "--out", str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["micro_mAP"] == original["micro_mAP"] and m["macro_mAP"] == original["macro_mAP"]


def test_truth_table_keeps_an_empty_gt_file_in_its_split(tmp_path):
    gt = tmp_path / "gt"
    (gt / "dev-test-sony").mkdir(parents=True)
    shutil.copy(TINY / "gt" / "tiny_std.json", gt / "dev-test-sony" / "tiny_std.json")
    (gt / "dev-test-sony" / "quiet_std.json").write_text('{"annotations": []}')
    table = tmp_path / "truth.parquet"
    assert main(["ingest", str(gt), "--truth", "--out", str(table), "--quiet"]) == 0
    assert table_clips(table) == {"quiet": "dev-test-sony", "tiny": "dev-test-sony"}
    out = tmp_path / "gtx"
    assert main(["export", str(table), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "dev-test-sony" / "quiet_std.json").read_bytes()) == {"annotations": []}
    assert (out / "dev-test-sony" / "tiny_std.json").exists()


def test_a_filtered_table_keeps_its_clip_list_when_passed_on(tmp_path):
    got = read_predictions([TINY / "pred"])
    write_table(got.table, tmp_path / "a.parquet", "detections", clips=got.clips)
    df = read_table(tmp_path / "a.parquet").filter(pl.col("score") > 2)  # a stage that keeps no row
    write_table(df, tmp_path / "b.parquet", "detections", clips=table_clips(tmp_path / "a.parquet"))
    assert table_clips(tmp_path / "b.parquet") == {"tiny": ""}
    files = export_table(read_table(tmp_path / "b.parquet"), tmp_path / "out", "pred",
                         clips=table_clips(tmp_path / "b.parquet"))
    assert [f.name for f in files] == ["tiny.json"] and json.loads(files[0].read_bytes()) == {"annotations": []}


def test_tables_without_the_clip_list_read_their_rows_clips(tmp_path):
    got = read_predictions([TINY / "pred"])
    t = got.table.to_arrow()
    md = {k.encode(): v.encode() for k, v in metadata("detections").items()}  # an older file: no calib.clips
    pq.write_table(t.replace_schema_metadata(md), tmp_path / "old.parquet")
    assert table_clips(tmp_path / "old.parquet") == {"tiny": ""}


def _foreign_table(path, clip="tiny", split=None, listed=None):
    """A detections (or truth) Parquet written by someone else's code, bypassing write_table."""
    from calib.io.dcase import read_truth

    if split is None:
        df = read_predictions([TINY / "pred"]).table.with_columns(pl.lit(clip).alias("clip"))
        kind = "detections"
    else:
        df = read_truth(TINY / "gt").table.with_columns(pl.lit(clip).alias("clip"), pl.lit(split).alias("split"))
        kind = "truth"
    md = metadata(kind)
    if listed is not None:
        md["calib.clips"] = json.dumps(listed)
    pq.write_table(df.to_arrow().replace_schema_metadata({k.encode(): v.encode() for k, v in md.items()}), path)
    return path


@pytest.mark.parametrize("clip, split, listed, words", [
    ("../../x", None, None, ["row 0", "unsafe clip name '../../x'"]),
    ("/abs/x", None, None, ["row 0", "unsafe clip name '/abs/x'"]),
    ("tiny", None, {"tiny": "", "../evil": ""}, ["calib.clips metadata", "unsafe clip name '../evil'"]),
    ("tiny", "../..", None, ["row 0", "unsafe split '../..'"]),
])
def test_export_refuses_unsafe_names_and_writes_nothing(tmp_path, capsys, clip, split, listed, words):
    table = _foreign_table(tmp_path / "foreign.parquet", clip, split, listed)
    with pytest.raises((InputError, ValueError)) as e:
        read_table(table)
    for w in [str(table)] + words:
        assert w in str(e.value), (w, str(e.value))
    out = tmp_path / "a" / "b" / "out"
    rc = main(["export", str(table), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and str(table) in err and words[-1] in err
    assert not (tmp_path / "a").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.parquet"]


def test_export_table_checks_names_before_writing(tmp_path):
    got = read_predictions([TINY / "pred"])
    with pytest.raises(InputError, match=r"mytable: unsafe clip name '\.\./x'"):
        export_table(got.table, tmp_path / "out", "pred", clips=["../x"], where="mytable")
    assert list(tmp_path.iterdir()) == []


def test_ingest_refuses_a_file_whose_name_is_not_a_clip_name(tmp_path, capsys):
    d = tmp_path / "preds"
    d.mkdir()
    shutil.copy(TINY / "pred" / "tiny.json", d / "my clip.json")
    out = tmp_path / "t.parquet"
    assert main(["ingest", str(d), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "my clip.json" in err and "unsafe clip name 'my clip'" in err
    assert not out.exists()


def test_parquet_and_json_outputs_follow_the_umask(tmp_path):
    import os

    got = read_predictions([TINY / "pred"])
    old = os.umask(0o027)
    try:
        path = write_table(got.table, tmp_path / "t.parquet", "detections", clips=got.clips)
        files = export_table(got.table, tmp_path / "out", "pred")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
    assert files[0].stat().st_mode & 0o777 == 0o640


def test_teacher_tables_keep_clips_without_rows_too(tmp_path):
    from calib.io.seld import read_teachers

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "busy.csv").write_text("0,1,0,-170,20\n")
    (tmp_path / "t" / "silent.csv").write_text("")
    got = read_teachers([tmp_path / "t"])
    write_table(got.table, tmp_path / "teacher.parquet", "teacher", clips=got.clips)
    assert table_clips(tmp_path / "teacher.parquet") == {"busy": "", "silent": ""}
    assert read_table(tmp_path / "teacher.parquet").get_column("clip").to_list() == ["busy"]
