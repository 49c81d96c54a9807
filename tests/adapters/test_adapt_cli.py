"""calib adapt: argument handling, written tables and their metadata, errors without partial output."""
import argparse
import json

import numpy as np
import polars as pl
import pytest

from calib.cli import adapt as adapt_cli
from calib.adapters.base import AdapterError

torch = pytest.importorskip("torch")
pytest.importorskip("soundfile")

from calib.adapters.vit import AudioPriorNet  # noqa: E402
from calib.tables import read_metadata, read_table  # noqa: E402
from adapter_test_utils import calib_subprocess, noise, write_audio  # noqa: E402
from tiny_adapter_models import TinyInstance  # noqa: E402

VIT = {"img_size": [208, 128], "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 4, "head_hidden": [8]}


def cli(argv) -> int:
    parser = argparse.ArgumentParser(prog="calib")
    adapt_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["adapt", *map(str, argv)])
    return args.func(args)


@pytest.fixture
def data(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    write_audio(audio / "c1.wav", noise(4, 2.5, 24000, 0), 24000)
    torch.manual_seed(0)
    torch.save(AudioPriorNet(**VIT).state_dict(), tmp_path / "prior.pt")
    (tmp_path / "prior.json").write_text(json.dumps({"architecture": "audiomae-vit-prior", "params": VIT}))
    torch.save(TinyInstance().state_dict(), tmp_path / "inst.pt")
    return tmp_path


def test_parse_params_reads_json_values_else_strings():
    assert adapt_cli.parse_params(["a=0.3", "b=grid", "c=[100, 50]", "d=true", "e=null", "f="]) == {
        "a": 0.3, "b": "grid", "c": [100, 50], "d": True, "e": None, "f": ""}
    with pytest.raises(AdapterError, match="KEY=VALUE"):
        adapt_cli.parse_params(["novalue"])


def test_writes_the_table_with_its_provenance(data, capsys):
    out = data / "out" / "priors.parquet"
    rc = cli(["audio-prior", "--checkpoint", data / "prior.pt", "--model-config", data / "prior.json",
              "--input", data / "audio", "--out", out, "--param", "hop_frames=10", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    table = read_table(out, "priors")
    assert table.select("start_frame", "end_frame").rows() == [(0, 20), (10, 25), (20, 25)]
    md = read_metadata(out)
    assert md["calib.adapter"] == "audio-prior"
    assert json.loads(md["calib.adapter_params"])["hop_frames"] == 10
    assert set(json.loads(md["calib.sources"])) == {str(data / "prior.pt"), str(data / "audio" / "c1.wav")}


def test_inline_model_config_and_params(data):
    out = data / "d.parquet"
    config = json.dumps({"architecture": "tiny_adapter_models:TinyInstance"})
    args = ["energy-instance", "--checkpoint", data / "inst.pt", "--model-config", config, "--input",
            data / "audio" / "c1.wav", "--out", out, "--param", "points=grid", "--param", "grid=2",
            "--batch-size", "4", "--device", "cpu", "--quiet"]
    assert cli(args) == 2  # the config names code to import: not without --allow-import
    assert not out.exists()
    assert cli([*args, "--allow-import", "tiny_adapter_models"]) == 0
    t = read_table(out, "detections")
    assert len(t) == 50 and (t["points"].list.get(0).list.len() == 4).all()


def test_pickled_modules_are_refused_without_output(data, capsys):
    torch.save(TinyInstance(), data / "whole.pt")
    out = data / "res" / "d.parquet"
    args = ["energy-instance", "--checkpoint", data / "whole.pt", "--input", data / "audio", "--out", out, "--quiet"]
    for extra in ([], ["--trust-checkpoint"]):  # unpickling could run any code: never, trusted or not
        assert cli([*args, *extra]) == 2
        assert "never unpickled" in capsys.readouterr().err
        assert not out.exists()


def test_errors_name_what_to_fix(data, capsys):
    assert cli(["accdoa"]) == 2
    assert "missing --checkpoint, --input, --out" in capsys.readouterr().err
    assert cli(["nope", "--checkpoint", data / "inst.pt", "--input", data / "audio", "--out", data / "x.parquet"]) == 2
    assert "unknown adapter 'nope'; known:" in capsys.readouterr().err
    (data / "audio" / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    out = data / "y.parquet"
    assert cli(["audio-prior", "--checkpoint", data / "prior.pt", "--model-config", data / "prior.json", "--input",
                data / "audio", "--out", out, "--quiet"]) == 2
    assert "broken.wav: cannot read audio" in capsys.readouterr().err
    assert not out.exists() and not list(data.glob(".y.parquet*"))
    assert cli(["audio-prior", "--checkpoint", data / "prior.pt", "--model-config", "{bad json", "--input",
                data / "audio", "--out", out]) == 2
    assert "neither a JSON file nor valid JSON" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli(["audio-prior", "--checkpoint", data / "prior.pt", "--model-config", data / "prior.json",
                    "--input", data / "audio" / "c1.wav", "--out", out, "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def test_example_plugin_runs_through_its_entry_point(example_pkg_path, tmp_path):
    sr = 8000
    audio = noise(4, 2.5, sr, 9) * np.array([[1.0], [0.5], [2.0], [0.1]], dtype=np.float32)
    write_audio(tmp_path / "e.wav", audio, sr)
    lin = torch.nn.Linear(4, 13)
    torch.manual_seed(3)
    torch.nn.init.normal_(lin.weight)
    torch.save({"linear.weight": lin.weight.detach(), "linear.bias": lin.bias.detach()}, tmp_path / "rms.pt")
    out = tmp_path / "e.parquet"
    proc = calib_subprocess(["adapt", "window-rms-prior", "--checkpoint", str(tmp_path / "rms.pt"), "--model-config",
                             '{"architecture": "rms-linear"}', "--input", str(tmp_path / "e.wav"), "--out", str(out),
                             "--quiet"], extra_path=[example_pkg_path])
    assert proc.returncode == 0, proc.stderr
    table = read_table(out, "priors")
    assert table.select("start_frame", "end_frame").rows() == [(0, 20), (20, 25)]
    w, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
    for row, (s, e) in zip(table.iter_rows(named=True), [(0, 16000), (16000, 20000)]):
        window = np.pad(audio[:, s:e], ((0, 0), (0, 16000 - (e - s)))).astype(np.float64)
        rms = np.sqrt((window ** 2).mean(axis=1))
        want = 1 / (1 + np.exp(-(w @ np.log10(rms + 1e-8) + b)))
        np.testing.assert_allclose([row[f"p_{k}"] for k in range(13)], want, rtol=1e-5)
    assert pl.read_parquet(out).height == 2
