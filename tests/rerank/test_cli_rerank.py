"""calib rerank apply / features through the command module (fit needs the scorer: see
tests/rerank/test_cli_fit.py)."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from calib.cli import rerank as cli
from calib.rerank.pipeline import fit_reranker
from calib.tables import read_table, write_table

from synthdets import make, truth_for


def parse(argv):
    p = argparse.ArgumentParser(prog="calib")
    sub = p.add_subparsers(dest="command")
    cli.add_parser(sub)
    return p.parse_args(["rerank", *argv])


def run(argv) -> int:
    from calib.io.errors import InputError

    args = parse(argv)
    try:
        return args.func(args)
    except InputError as e:  # what calib's main turns into exit status 2
        print(f"error: {e}")
        return 2


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    dets, match, splits = make(n_clips=6, frames=8, per_frame=5, seed=4)
    res = fit_reranker(dets, truth_for(splits), match=match, folds=2, score_map=False, min_samples_leaf=20,
                       n_estimators=30, num_threads=1)
    return res.save(tmp_path_factory.mktemp("m") / "model")


def test_apply_writes_reranked_table(model_dir, tmp_path, capsys):
    dets, _, _ = make(n_clips=2, frames=5, per_frame=4, seed=11)
    src = write_table(dets, tmp_path / "test.parquet", "detections")
    out = tmp_path / "out.parquet"
    assert run(["apply", str(src), "--model", str(model_dir), "--out", str(out)]) == 0
    got = read_table(out, "detections")
    assert got.get_column("score_raw").to_list() == dets.get_column("score").to_list()
    from calib.rerank.pipeline import RerankModel
    np.testing.assert_array_equal(got.get_column("score").to_numpy(), RerankModel.load(model_dir).predict(dets))
    again = tmp_path / "again.parquet"
    run(["apply", str(src), "--model", str(model_dir), "--out", str(again)])
    assert out.read_bytes() == again.read_bytes()
    assert "reranked 40 detections" in capsys.readouterr().out


def test_apply_refuses_a_changed_feature(model_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    meta = json.loads((bad / "reranker.json").read_text())
    meta["features"][0]["version"] = 7
    (bad / "reranker.json").write_text(json.dumps(meta))
    dets, _, _ = make(n_clips=1, frames=2, per_frame=2, seed=1)
    src = write_table(dets, tmp_path / "d.parquet", "detections")
    out = tmp_path / "o.parquet"
    assert run(["apply", str(src), "--model", str(bad), "--out", str(out)]) == 2
    assert "trained on version 7" in capsys.readouterr().out
    assert not out.exists()


def test_features_lists_every_feature_with_its_doc(capsys):
    assert run(["features"]) == 0
    text = capsys.readouterr().out
    assert "closure  [train-only; v1; features.gates]" in text
    assert "energy_entropy  [default; v1; features.energy]" in text
    assert "Normalised entropy" in text


def test_help_teaches():
    p = argparse.ArgumentParser(prog="calib")
    sub = p.add_subparsers(dest="command")
    cli.add_parser(sub)
    fit_help = sub.choices["rerank"]._subparsers._group_actions[0].choices["fit"].format_help()
    assert "out-of-fold" in fit_help and "--group" in fit_help and "reliability.png" in fit_help
