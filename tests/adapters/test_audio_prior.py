"""audio-prior: windows, features, the ViT against torch's own transformer layer, priors rows."""
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
from calib.adapters.vit import AudioPriorNet, Block, VisionTransformer  # noqa: E402
from calib.io.priors import read_priors  # noqa: E402
from calib.tables import PRIORS  # noqa: E402
from adapter_test_utils import noise, write_audio  # noqa: E402

VIT = {"img_size": [208, 128], "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 4, "head_hidden": [16]}
CONFIG = {"architecture": "audiomae-vit-prior", "params": VIT}


def test_parameter_names_are_timms():
    keys = set(AudioPriorNet(**VIT).state_dict())
    for k in ("patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed", "blocks.0.norm1.weight",
              "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.1.norm2.bias",
              "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.bias", "fc_norm.weight", "head.layers.0.weight",
              "head.layers.1.bias"):
        assert k in keys, k
    assert AudioPriorNet(**VIT).pos_embed.shape == (1, 1 + 13 * 8, 32)
    assert "norm.weight" in VisionTransformer(img_size=(32, 32), embed_dim=8, depth=1, num_heads=2,
                                              global_pool="token").state_dict()


def test_only_the_head_is_trainable():
    net = AudioPriorNet(**VIT)
    assert {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad} == {"head"}


def test_block_equals_torch_pre_norm_transformer_layer():
    torch.manual_seed(0)
    block = Block(32, 4, 4.0, True, 1e-6).eval()
    ref = torch.nn.TransformerEncoderLayer(32, 4, 128, dropout=0.0, activation="gelu", layer_norm_eps=1e-6,
                                           batch_first=True, norm_first=True).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
        ref.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
        for a, b in ((ref.linear1, block.mlp.fc1), (ref.linear2, block.mlp.fc2), (ref.norm1, block.norm1),
                     (ref.norm2, block.norm2)):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
        x = torch.randn(3, 9, 32)
        torch.testing.assert_close(block(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.fixture
def clip(tmp_path):
    return write_audio(tmp_path / "p.wav", noise(4, 3.05, 24000, 4), 24000)  # 31 label frames


def constant_head_ckpt(path, bias):
    torch.manual_seed(1)
    net = AudioPriorNet(**VIT)
    with torch.no_grad():
        net.head.layers[-1].weight.zero_()
        net.head.layers[-1].bias.copy_(torch.tensor(bias))
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.parametrize("hop, windows", [(20, [(0, 20), (20, 31)]), (10, [(0, 20), (10, 30), (20, 31), (30, 31)])])
def test_windows_and_probabilities_from_a_constant_head(tmp_path, clip, hop, windows):
    bias = np.linspace(-3, 3, 13, dtype=np.float32)
    ckpt = constant_head_ckpt(tmp_path / "v.pt", bias)
    res = adapt("audio-prior", ckpt, [clip], batch_size=3, params={"model_config": CONFIG, "hop_frames": hop})
    p = 1.0 / (1.0 + np.exp(-bias.astype(np.float64)))
    want = pl.DataFrame([("p", s, e, *p) for s, e in windows], schema=PRIORS, orient="row")
    assert_frame_equal(res.table, want, check_exact=False, rel_tol=1e-6)
    soft = adapt("audio-prior", ckpt, [clip], params={"model_config": CONFIG, "activation": "softmax"})
    np.testing.assert_allclose(soft.table.select(pl.col("^p_.*$")).to_numpy()[0], np.exp(bias) / np.exp(bias).sum(),
                               rtol=1e-6)


def test_windows_are_mono_16k_slices_minus_their_mean(tmp_path):
    sr = 16000
    ramp = np.arange(1, 2 * sr + 8001, dtype=np.float32) / 1e5  # 2.5 s
    path = write_audio(tmp_path / "m.wav", np.stack([ramp, 3 * ramp]), sr)  # mono = 2 ramp
    ckpt = constant_head_ckpt(tmp_path / "v.pt", np.zeros(13, np.float32))
    adapter = make_adapter("audio-prior", model_config=CONFIG, hop_frames=10).load(ckpt, "cpu")
    wave, starts, n_frames = adapter.windows(path)
    assert n_frames == 25 and starts.tolist() == [0, 10, 20] and wave.shape == (3, 32000)
    mono = np.pad(2 * ramp, (0, 32000))
    for k, s in enumerate(starts):
        seg = mono[s * 1600: s * 1600 + 32000]
        np.testing.assert_allclose(wave[k].numpy(), seg - seg.mean(), rtol=1e-5, atol=1e-6)
    feats = adapter.features(wave)
    assert feats.shape == (3, 1, 208, 128)
    pad_value = (0 + 4.2677393) / (2 * 4.5689974)  # zero-padded filterbank frames 198..207, normalised
    np.testing.assert_allclose(feats[:, 0, 198:].numpy(), pad_value, rtol=1e-6)


def test_random_encoder_is_deterministic_and_readable_as_priors(tmp_path, clip):
    write_audio(tmp_path / "q.flac", noise(4, 1.0, 48000, 5), 48000)
    torch.manual_seed(7)
    torch.save(AudioPriorNet(**VIT).state_dict(), tmp_path / "r.pt")
    runs = [adapt("audio-prior", tmp_path / "r.pt", [tmp_path], batch_size=2, params={"model_config": CONFIG})
            for _ in range(2)]
    assert_frame_equal(runs[0].table, runs[1].table)
    assert runs[0].table.select("clip", "start_frame", "end_frame").rows() == [("p", 0, 20), ("p", 20, 31), ("q", 0, 10)]
    write_result(runs[0], tmp_path / "a.parquet")
    write_result(runs[1], tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    back, _ = read_priors(tmp_path / "a.parquet")
    assert_frame_equal(back, runs[0].table)


def test_probabilities_must_be_probabilities(tmp_path, clip):
    ckpt = constant_head_ckpt(tmp_path / "v.pt", np.full(13, 2.0, np.float32))
    with pytest.raises(AdapterError, match=r"clip p, window at frame 0: probabilities outside \[0, 1\]"):
        adapt("audio-prior", ckpt, [clip], params={"model_config": CONFIG, "activation": "none"})


def test_bf16_autocast_stays_close_to_fp32(tmp_path, clip):
    torch.manual_seed(7)
    torch.save(AudioPriorNet(**VIT).state_dict(), tmp_path / "r.pt")
    full = adapt("audio-prior", tmp_path / "r.pt", [clip], params={"model_config": CONFIG})
    half = adapt("audio-prior", tmp_path / "r.pt", [clip], params={"model_config": CONFIG, "precision": "bf16"})
    assert_frame_equal(half.table, full.table, check_exact=False, abs_tol=0.02)
    assert not half.table.equals(full.table)  # autocast really ran in bfloat16
