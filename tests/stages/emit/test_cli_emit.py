"""calib stages and calib emit-ablation, called through their modules."""
import argparse
import json

import numpy as np
import polars as pl
import pytest

from calib.cli import emit_ablation, stages
from calib.io.dcase import dumps_clip
from calib.stages.base import registry
from calib.stages.emit.ablation import clip_file_sizes, format_table, parse_emitter

MY_STAGES = ["cap", "class_filter", "compress", "dense", "gaussian", "grid", "hull", "nms", "objectness",
             "rowmajor", "size_guard", "threshold", "tracker"]


def parser(module):
    p = argparse.ArgumentParser(prog="calib")
    module.add_parser(p.add_subparsers(dest="command"))
    return p


def test_stages_lists_every_registered_stage_with_parameters(capsys):
    args = parser(stages).parse_args(["stages"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for name, cls in registry().items():
        assert f"{name}: " in out
        for param in cls.param_names():
            assert f"{param}=" in out
    assert set(MY_STAGES) <= set(registry())


def test_stages_json_and_details(capsys):
    args = parser(stages).parse_args(["stages", "--json"])
    assert args.func(args) == 0
    info = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert info["compress"]["params"] == {"frac": 0.1, "cell": 5, "cell_high": 4, "high_score": 0.5, "spread": 0.0}
    assert info["tracker"]["adds_columns"] == ["track_id", "track_age"]
    assert info["class_filter"]["learns"] is True
    args = parser(stages).parse_args(["stages", "nms"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("nms\n") and "iou_threshold=0.1" in out and "reads tables: detections" in out
    args = parser(stages).parse_args(["stages", "nope"])
    assert args.func(args) == 2
    assert "unknown stage 'nope'" in capsys.readouterr().err


def test_emitter_specs_parse():
    assert parse_emitter("grid") == {"type": "grid"}
    assert parse_emitter("compress:cell=6:cell_high=3") == {"type": "compress", "cell": 6, "cell_high": 3}
    assert parse_emitter("gaussian:source=teacher:scale=1.5") == {"type": "gaussian", "source": "teacher", "scale": 1.5}
    with pytest.raises(ValueError, match="key=value"):
        parse_emitter("grid:3")


def test_clip_sizes_and_table_format(dets):
    df = dets([{"clip": "a", "polys": [np.array([[1.0, 2.0, 3.0]])]}, {"clip": "b", "det_id": 0, "polys": []},
               {"clip": "a", "det_id": 5, "polys": []}])
    sizes = clip_file_sizes(df)
    assert sizes.tolist() == [len(dumps_clip(df.filter(pl.col("clip") == c).sort("det_id"), "pred")) for c in "ab"]
    t = pl.DataFrame({"emitter": ["none", "grid"], "macro_mAP": [0.2, 0.3], "rel_mAP": [0.0, 0.5],
                      "macro_pearson_r": [None, 0.5], "largest_MiB": [1.0, 0.1], "mean_MiB": [0.5, 0.05],
                      "points": [100, 9], "emit_s": [0.0, 0.1]})
    text = format_table(t)
    assert "grid" in text and "+50.0%" in text and text.splitlines()[2].split()[3] == "-"


def test_table_prints_absolute_differences_when_the_baseline_is_near_zero():
    # sparse peaks score ~0 as given: 0.3 / 0.000111 - 1 would print as +270170.3 %
    t = pl.DataFrame({"emitter": ["none", "grid", "hull"], "macro_mAP": [0.000111, 0.3, None],
                      "rel_mAP": [0.0, 0.3 / 0.000111 - 1, None], "macro_pearson_r": [0.1, 0.5, None],
                      "largest_MiB": [1.0, 0.1, 0.2], "mean_MiB": [0.5, 0.05, 0.1], "points": [100, 9, 7],
                      "emit_s": [0.0, 0.1, 0.1]})
    lines = format_table(t).splitlines()
    assert lines[0].split()[2] == "diff_mAP"
    assert [ln.split()[2] for ln in lines[2:5]] == ["+0.0000", "+0.2999", "-"]  # 0.3 - 0.000111
    assert "%" not in "\n".join(lines[:5]) and "absolute" in lines[5]
    relative = format_table(t.with_columns(pl.Series("macro_mAP", [0.01, 0.3, None]),
                                           pl.Series("rel_mAP", [0.0, 29.0, None])))
    assert relative.splitlines()[0].split()[2] == "rel_mAP" and "+2900.0%" in relative


def test_emit_ablation_help_is_complete():
    p = parser(emit_ablation)
    with pytest.raises(SystemExit):
        p.parse_args(["emit-ablation"])  # DETS and --truth are required
    args = p.parse_args(["emit-ablation", "d.parquet", "--truth", "gt"])
    assert args.emitters == "grid,dense,rowmajor,compress,hull" and args.protocol == "dcase2026"


def square(x0, y0, w, h, e=1.0):
    xs, ys = np.meshgrid(np.arange(x0, x0 + w), np.arange(y0, y0 + h))
    return np.column_stack([xs.ravel(), ys.ravel(), np.full(xs.size, e)]).astype(float)


def test_emit_ablation_end_to_end(dets, tmp_path, capsys):
    from calib.tables import conform, write_table

    det = dets([{"class_id": 0, "score": 0.9, "polys": [square(100, 60, 20, 16)]},
                {"class_id": 1, "score": 0.4, "frame": 2, "polys": [square(200, 60, 20, 16)]}])
    truth = conform(det.select("clip", pl.lit("").alias("split"), "frame", pl.col("det_id").alias("ann_id"),
                               "class_id", pl.lit(1, pl.Int64).alias("instance_id"), "distance", "points",
                               pl.lit(False).alias("category_str"), "extra"), "truth")
    write_table(det, tmp_path / "d.parquet", "detections")
    write_table(truth, tmp_path / "t.parquet", "truth")
    args = parser(emit_ablation).parse_args(["emit-ablation", str(tmp_path / "d.parquet"), "--truth",
                                             str(tmp_path / "t.parquet"), "--emitters", "compress,grid:n=5",
                                             "--json", str(tmp_path / "a.json")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    rows = {r["emitter"]: r for r in json.loads((tmp_path / "a.json").read_text())}
    assert list(rows) == ["none", "compress", "grid:n=5"] and "compress" in out
    assert rows["none"]["macro_mAP"] == pytest.approx(1.0) and rows["none"]["rel_mAP"] == 0
    assert rows["compress"]["macro_mAP"] == pytest.approx(1.0)  # same region, far fewer points
    assert rows["compress"]["points"] < rows["none"]["points"] / 5
    assert rows["grid:n=5"]["points"] == 2 * 25
    assert rows["none"]["largest_MiB"] * 2**20 == pytest.approx(clip_file_sizes(det).max())
    bad = parser(emit_ablation).parse_args(["emit-ablation", str(tmp_path / "d.parquet"), "--truth",
                                            str(tmp_path / "t.parquet"), "--emitters", "nosuch"])
    from calib.io.errors import InputError

    with pytest.raises(InputError, match="unknown stage 'nosuch'"):
        bad.func(bad)
