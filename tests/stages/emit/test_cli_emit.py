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
    assert out.startswith("nms\n") and "iou_threshold=0.5" in out and "reads tables: detections" in out
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


def test_emit_ablation_help_is_complete():
    p = parser(emit_ablation)
    with pytest.raises(SystemExit):
        p.parse_args(["emit-ablation"])  # DETS and --truth are required
    args = p.parse_args(["emit-ablation", "d.parquet", "--truth", "gt"])
    assert args.emitters == "grid,dense,rowmajor,compress,hull" and args.protocol == "dcase2026"
