"""energy-instance: torchvision-style per-frame dicts -> detections rows, checked against hand-made rows."""
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

torch = pytest.importorskip("torch")
pytest.importorskip("soundfile")

from calib.adapters import adapt  # noqa: E402
from calib.adapters.base import AdapterError  # noqa: E402
from calib.adapters.registry import make_adapter  # noqa: E402
from calib.adapters.runner import write_result  # noqa: E402
from calib.tables import DETECTIONS, conform, read_table  # noqa: E402
from adapter_test_utils import noise, write_audio  # noqa: E402
import tiny_adapter_models as tiny_models  # noqa: E402
from tiny_adapter_models import FixedInstance, TinyInstance  # noqa: E402

ALLOW = ["tiny_adapter_models"]  # the model configs name its factories: --allow-import tiny_adapter_models
FIXED = {"architecture": "tiny_adapter_models:FixedInstance"}


@pytest.fixture
def fixed_ckpt(tmp_path):
    m = FixedInstance()
    m.gain.data.fill_(2.0)
    torch.save(m.state_dict(), tmp_path / "fixed.pt")
    np.save(tmp_path / "clipA.npy", np.arange(4, dtype=np.float32)[:, None])
    return tmp_path / "fixed.pt"


def expected(rows) -> pl.DataFrame:
    df = pl.DataFrame(rows, schema={k: v for k, v in DETECTIONS.items() if k not in ("instance_id", "extra")},
                      orient="row")
    return conform(df.with_columns(pl.lit(None, pl.Int64).alias("instance_id"), pl.lit(None, pl.String).alias("extra")),
                   "detections")


def pts(*triplets):
    return [[{"x": x, "y": y, "e": e} for x, y, e in triplets]]


A = pts((355.0, 15.0, 2.0), (355.0, 25.0, 1.0))  # 0.125 of peak 2 is under 0.1 x 2: dropped; wrapped 365 -> 5 too
B = pts((9.0, 4.5, 0.5), (27.0, 4.5, 1.0), (27.0, 13.5, 0.25))


@pytest.mark.parametrize("batch_size", [1, 3, 50])
def test_rows_match_the_hand_computed_table(fixed_ckpt, tmp_path, batch_size):
    res = adapt("energy-instance", fixed_ckpt, [tmp_path / "clipA.npy"], batch_size=batch_size,
                params={"allow_import": ALLOW, "model_config": FIXED, "distance_scale": 100.0})
    want = expected([
        ("fixed", "clipA", 0, 0, 2, 0.5, 150.0, A),
        ("fixed", "clipA", 1, 1, 2, 0.625, 250.0, A),
        ("fixed", "clipA", 1, 2, 12, 0.0625, 100.0, B),
        ("fixed", "clipA", 2, 3, 2, 0.75, 350.0, A),
        ("fixed", "clipA", 3, 4, 2, 0.875, 450.0, A),
        ("fixed", "clipA", 3, 5, 12, 0.0625, 100.0, B),
    ])
    assert_frame_equal(res.table, want)


def test_min_score_grid_points_and_system_name(fixed_ckpt, tmp_path):
    res = adapt("energy-instance", fixed_ckpt, [tmp_path], params={
        "allow_import": ALLOW, "model_config": FIXED, "min_score": 0.1, "points": "grid", "grid": 1, "system": "sysX"})
    centre = pts((0.0, 20.0, (2.0 + 0.125 + 1.0) / 4))  # box centre x = 360 -> 0
    want = expected([("sysX", "clipA", t, t, 2, 0.5 + t / 8, 1.5 + t, centre) for t in range(4)])
    assert_frame_equal(res.table, want)


def test_bad_labels_name_clip_and_frame(tmp_path):
    torch.save(FixedInstance().state_dict(), tmp_path / "f.pt")
    np.save(tmp_path / "clipB.npy", np.arange(3, dtype=np.float32)[:, None])
    with pytest.raises(AdapterError, match=r"clip clipB, frame 1: label 0 outside 1..13"):
        adapt("energy-instance", tmp_path / "f.pt", [tmp_path / "clipB.npy"],
              params={"allow_import": ALLOW, "model_config": {**FIXED, "params": {"bad_label": True}}})


@pytest.fixture
def audio_dir(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    write_audio(folder / "c1.wav", noise(4, 3.05, 24000, 1), 24000)
    write_audio(folder / "c2.wav", noise(4, 2.0, 48000, 2), 48000)  # resampled to 24 kHz
    torch.save(TinyInstance(seed=5).state_dict(), tmp_path / "tiny.pt")
    return folder


TINY = {"architecture": "tiny_adapter_models:TinyInstance", "params": {"seed": 0}}


def test_random_model_on_audio_is_schema_valid_and_deterministic(audio_dir, tmp_path):
    runs = [adapt("energy-instance", tmp_path / "tiny.pt", [audio_dir], batch_size=7, params={"allow_import": ALLOW, "model_config": TINY})
            for _ in range(2)]
    assert_frame_equal(runs[1].table, runs[0].table)
    # other batch sizes: the same rows; float32 kernels may round differently with the batch shape
    other = adapt("energy-instance", tmp_path / "tiny.pt", [audio_dir], batch_size=64, params={"allow_import": ALLOW, "model_config": TINY})
    assert_frame_equal(other.table.drop("points"), runs[0].table.drop("points"), check_exact=False, rel_tol=1e-4)
    t = runs[0].table
    assert t.group_by("clip").agg(pl.col("frame").n_unique()).sort("clip").rows() == [("c1", 31), ("c2", 20)]
    assert t.filter(pl.col("clip") == "c1")["det_id"].to_list() == list(range(62))  # 2 per frame
    assert t["class_id"].is_between(0, 12).all() and t["distance"].is_not_null().all()
    points = t["points"].explode().explode().struct.unnest()
    assert points["x"].is_between(0, 360).all() and points["y"].is_between(0, 180).all()
    write_result(runs[0], tmp_path / "a.parquet")
    write_result(runs[1], tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert_frame_equal(read_table(tmp_path / "a.parquet", "detections"), t)


def test_raw_windows_are_centred_on_their_frame(tmp_path):
    sr = 24000
    ramp = np.tile(np.arange(1, 5 * 2400 + 1, dtype=np.float32) / 1e5, (4, 1))  # 5 label frames, no zeros inside
    ramp[1] *= -1
    write_audio(tmp_path / "r.wav", ramp, sr)
    torch.save(TinyInstance().state_dict(), tmp_path / "t.pt")
    adapter = make_adapter("energy-instance", allow_import=ALLOW, model_config=TINY, features="raw", window_frames=3)
    x = adapter.load(tmp_path / "t.pt", "cpu").frame_inputs(tmp_path / "r.wav").numpy()
    assert x.shape == (5, 4, 3 * 2400)
    padded = np.pad(ramp, ((0, 0), (2400, 2400)))
    for t in range(5):
        np.testing.assert_allclose(x[t], padded[:, t * 2400:(t + 3) * 2400], rtol=1e-6)
    assert (x[0, :, :2400] == 0).all() and (x[4, :, -2400:] == 0).all()


def test_bad_parameters_are_refused(tmp_path, fixed_ckpt):
    with pytest.raises(AdapterError, match="points 'sparse'"):
        adapt("energy-instance", fixed_ckpt, [tmp_path / "clipA.npy"], params={"allow_import": ALLOW, "model_config": FIXED, "points": "sparse"})
    with pytest.raises(AdapterError, match="divide 0.1 s"):
        adapt("energy-instance", fixed_ckpt, [tmp_path / "clipA.npy"], params={"allow_import": ALLOW, "model_config": FIXED, "hop_s": 0.03})


def test_canvas_maps_place_points_on_the_whole_canvas(tmp_path):
    torch.save(tiny_models.CanvasInstance().state_dict(), tmp_path / "c.pt")
    np.save(tmp_path / "k.npy", np.zeros((2, 1), np.float32))
    params = {"allow_import": ALLOW, "model_config": {"architecture": "tiny_adapter_models:CanvasInstance"}, "canvas_size": [8, 4],
              "map_frame": "canvas"}
    res = adapt("energy-instance", tmp_path / "c.pt", [tmp_path / "k.npy"], params=params)
    # model pixel (row 1, col 6) centre (6.5, 1.5) x 45 canvas degrees per model pixel; no distances given
    want = expected([("c", "k", t, t, 0, 0.5, None, pts((292.5, 67.5, 1.0))) for t in range(2)])
    assert_frame_equal(res.table, want)
    with pytest.raises(AdapterError, match="map_frame=canvas use points=dense"):
        adapt("energy-instance", tmp_path / "c.pt", [tmp_path / "k.npy"], params={**params, "points": "grid"})


def test_emit_stages_rewrite_the_mapped_points(fixed_ckpt, tmp_path):
    from calib.stages.base import Tables, make_stage

    base = adapt("energy-instance", fixed_ckpt, [tmp_path / "clipA.npy"], params={"allow_import": ALLOW, "model_config": FIXED})
    spec = {"type": "grid", "n": 3}
    res = adapt("energy-instance", fixed_ckpt, [tmp_path / "clipA.npy"], params={"allow_import": ALLOW, "model_config": FIXED, "emit": spec})
    want = make_stage(spec).apply(Tables(detections=base.table))["detections"]
    assert_frame_equal(res.table, want)
    assert not res.table["points"].equals(base.table["points"])
    with pytest.raises(AdapterError, match="unknown stage 'nope'"):
        adapt("energy-instance", fixed_ckpt, [tmp_path / "clipA.npy"], params={"allow_import": ALLOW, "model_config": FIXED,
                                                                                "emit": {"type": "nope"}})
    with pytest.raises(AdapterError, match="unknown parameter"):
        adapt("energy-instance", fixed_ckpt, [tmp_path / "clipA.npy"], params={"allow_import": ALLOW, "model_config": FIXED,
                                                                                "emit": [{"type": "grid", "m": 2}]})
