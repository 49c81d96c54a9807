"""accdoa: multi-ACCDOA outputs -> teacher rows; thresholds, layouts, chunking and ACS views."""
import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

torch = pytest.importorskip("torch")
pytest.importorskip("soundfile")

from calib.adapters import adapt  # noqa: E402
from calib.adapters.base import AdapterError  # noqa: E402
from calib.adapters.runner import write_result  # noqa: E402
from calib.tables import TEACHER, read_table  # noqa: E402
from adapter_test_utils import foa_plane_wave, noise, write_audio  # noqa: E402
from tiny_adapter_models import ConstantAccdoa, TinyAccdoa  # noqa: E402

ALLOW = ["tiny_adapter_models"]  # the model configs name its factories: --allow-import tiny_adapter_models
CONST = "tiny_adapter_models:ConstantAccdoa"


@pytest.fixture
def clip(tmp_path):
    return write_audio(tmp_path / "s.wav", noise(4, 0.5, 24000, 0), 24000)  # 5 label frames


def constant_ckpt(path, k=4):
    m = ConstantAccdoa(k=k)
    v = torch.zeros(3, 3, 13, 4)
    v[0, 0, 5] = torch.tensor([0.0, 0.8, 0.0, 2.0])  # azimuth 90, elevation 0
    v[1, 1, 12] = torch.tensor([0.5, 0.0, 0.5, 1.0])  # norm 0.707: azimuth 0, elevation 45
    v[2, 2, 0] = torch.tensor([0.3, 0.0, 0.0, 5.0])  # norm 0.3: under the threshold
    v[2, 0, 7] = torch.tensor([0.0, 0.0, -0.9, 3.0])  # straight down
    m.value.data = v[..., :k].clone()
    torch.save(m.state_dict(), path)
    return path


def teacher(rows, with_distance=True):
    cols = list(TEACHER) + ["feat_activity"]
    df = pl.DataFrame(rows, schema=dict.fromkeys(cols, None), orient="row")
    df = df.with_columns(pl.col("clip").cast(pl.String), *(pl.col(c).cast(TEACHER[c]) for c in TEACHER if c != "clip"),
                         pl.col("feat_activity").cast(pl.Float64))
    return df if with_distance else df.with_columns(pl.lit(None, pl.Float64).alias("distance"))


EXPECTED = [  # clip, frame, class, track, az, el, distance (x 100), x, y, activity
    ("s", 0, 5, 0, 90.0, 0.0, 200.0, 90.0, 90.0, 0.8),
    ("s", 1, 12, 1, 0.0, 45.0, 100.0, 180.0, 45.0, math.sqrt(0.5)),
    ("s", 2, 7, 0, 0.0, -90.0, 300.0, 180.0, 180.0, 0.9),
    ("s", 3, 5, 0, 90.0, 0.0, 200.0, 90.0, 90.0, 0.8),  # second chunk; its 3rd frame (5) is past the clip
    ("s", 4, 12, 1, 0.0, 45.0, 100.0, 180.0, 45.0, math.sqrt(0.5)),
]


@pytest.mark.parametrize("flat, batch_size", [(False, 1), (True, 1), (False, 16)])
def test_rows_match_the_hand_computed_table(tmp_path, clip, flat, batch_size):
    ckpt = constant_ckpt(tmp_path / "c.pt")
    res = adapt("accdoa", ckpt, [clip], batch_size=batch_size, params={
        "allow_import": ALLOW, "model_config": {"architecture": CONST, "params": {"flat": flat}}, "chunk_frames": 3,
        "distance_scale": 100.0})
    assert "view" not in res.table.columns
    assert_frame_equal(res.table, teacher(EXPECTED), check_exact=False, rel_tol=1e-6, abs_tol=1e-9)


def test_three_component_output_has_no_distance_and_threshold_applies(tmp_path, clip):
    ckpt = constant_ckpt(tmp_path / "c.pt", k=3)
    res = adapt("accdoa", ckpt, [clip], params={
        "allow_import": ALLOW, "model_config": {"architecture": CONST, "params": {"k": 3}}, "chunk_frames": 3, "threshold": 0.75})
    want = [r for r in EXPECTED if r[-1] > 0.75]
    assert_frame_equal(res.table, teacher(want, with_distance=False), check_exact=False, rel_tol=1e-6, abs_tol=1e-9)


def test_acs_views_agree_on_a_plane_wave(tmp_path):
    path = write_audio(tmp_path / "pw.wav", foa_plane_wave(50.0, 25.0, 1.0, 24000, seed=3), 24000)
    torch.save({"dummy": torch.zeros(1)}, tmp_path / "iv.pt")
    config = {"architecture": "tiny_adapter_models:IntensityAccdoa", "params": {"frames": 10}}
    res = adapt("accdoa", tmp_path / "iv.pt", [path], batch_size=3,
                params={"allow_import": ALLOW, "model_config": config, "chunk_frames": 10, "acs": True})
    t = res.table
    assert t["view"].value_counts().sort("view").rows() == [(v, 10) for v in range(8)]
    assert set(t["class_id"]) == {0} and set(t["track"]) == {0}
    np.testing.assert_allclose(t["azimuth"], 50.0, atol=0.5)
    np.testing.assert_allclose(t["elevation"], 25.0, atol=0.5)
    plain = adapt("accdoa", tmp_path / "iv.pt", [path], params={"allow_import": ALLOW, "model_config": config, "chunk_frames": 10})
    assert "view" not in plain.table.columns and len(plain.table) == 10
    np.testing.assert_allclose(plain.table["azimuth"], 50.0, atol=0.5)


def test_random_model_mic_acs_is_deterministic(tmp_path):
    for name, sec in (("m1", 1.25), ("m2", 0.7)):
        write_audio(tmp_path / f"{name}.wav", noise(4, sec, 24000, len(name) + int(sec * 10)), 24000)
    torch.save(TinyAccdoa(in_channels=4, frames=5, seed=2).state_dict(), tmp_path / "t.pt")
    params = {"allow_import": ALLOW, "model_config": {"architecture": "tiny_adapter_models:TinyAccdoa",
                               "params": {"in_channels": 4, "frames": 5}},
              "features": "logmel", "audio_format": "mic", "acs": True, "chunk_frames": 5, "threshold": 0.3}
    runs = [adapt("accdoa", tmp_path / "t.pt", [tmp_path], batch_size=4, params=params) for _ in range(2)]
    assert_frame_equal(runs[1].table, runs[0].table)
    t = runs[0].table
    assert len(t) and set(t["view"]) == set(range(8)) and t["frame"].max() == 12
    assert t.filter(pl.col("clip") == "m2")["frame"].max() == 6
    write_result(runs[0], tmp_path / "t1.parquet")
    write_result(runs[1], tmp_path / "t2.parquet")
    assert (tmp_path / "t1.parquet").read_bytes() == (tmp_path / "t2.parquet").read_bytes()
    assert_frame_equal(read_table(tmp_path / "t1.parquet", "teacher"), t)


def test_frame_count_mismatch_is_explained(tmp_path, clip):
    torch.save(TinyAccdoa(frames=4).state_dict(), tmp_path / "t.pt")
    with pytest.raises(AdapterError, match="returned 4 frames for a chunk of 50 label frames; set chunk_frames"):
        adapt("accdoa", tmp_path / "t.pt", [clip],
              params={"allow_import": ALLOW, "model_config": {"architecture": "tiny_adapter_models:TinyAccdoa", "params": {"frames": 4}}})
