"""calib rerank fit -> apply through the command module, on a slice of the synthetic data."""
from __future__ import annotations

import json

import polars as pl
import pytest

from calib.tables import read_table, write_table

from test_cli_rerank import run


@pytest.fixture(scope="module")
def tables(synth_small, tmp_path_factory):
    from calib.io.dcase import ingest_predictions, ingest_truth

    dets, _ = ingest_predictions([synth_small / "systems" / "lowthr"], system="lowthr", progress=False)
    truth, _ = ingest_truth(synth_small / "gt", progress=False)
    clips = sorted(truth.get_column("clip").unique().to_list())[:4]
    keep = pl.col("clip").is_in(clips) & (pl.col("frame") < 12)
    d = tmp_path_factory.mktemp("cli_fit")
    return (write_table(dets.filter(keep), d / "dets.parquet", "detections"),
            write_table(truth.filter(keep), d / "truth.parquet", "truth"), d)


def test_fit_then_apply(tables, capsys):
    dets, truth, d = tables
    model = d / "model"
    args = ["fit", str(dets), "--truth", str(truth), "--out", str(model), "--folds", "2", "--min-samples-leaf", "5",
            "--n-estimators", "20", "--threads", "1"]
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "dev macro mAP [lowthr]: raw" in out and "in_sample" in out and "out_of_fold" in out
    report = json.loads((model / "report.json").read_text())
    maps = report["dev_mAP"]["lowthr"]
    assert set(maps) == {"raw", "in_sample", "out_of_fold"}
    assert report["cross_fitting"]["folds"] == 2
    oof = pl.read_parquet(model / "oof.parquet")
    assert oof.height == report["n_labelled"] and oof.get_column("score_oof").null_count() == 0

    reranked = d / "reranked.parquet"
    assert run(["apply", str(dets), "--model", str(model), "--out", str(reranked)]) == 0
    table = read_table(reranked, "detections")
    assert table.get_column("score_raw").to_list() == read_table(dets).get_column("score").to_list()

    # bad input: a clear error, exit status 2, nothing written
    bad = d / "bad_model"
    assert run(["fit", str(dets), "--truth", str(truth), "--out", str(bad), "--features", "nope"]) == 2
    assert "unknown feature 'nope'" in capsys.readouterr().out
    assert not bad.exists()
