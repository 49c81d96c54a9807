"""Audio loading, label-frame bookkeeping and features against hand-derived and reference values."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("soundfile")

from calib.adapters.audio import (FrontEnd, kaldi_fbank, kaldi_mel, n_label_frames, read_audio, resample,  # noqa: E402
                                  slaney_mel)
from calib.io.errors import InputError  # noqa: E402
from adapter_test_utils import foa_plane_wave, noise, write_audio  # noqa: E402

# Mean over frames of the Kaldi fbank (128 bins, 16 kHz, 25/10 ms, Hann, htk_compat, no energy, dither 0)
# of 0.5 s of 0.5 sin(2 pi 1000 t) + 0.25 sin(2 pi 3000 t) + 0.01 cos(2 pi 77 t), as printed by
# torchaudio.compliance.kaldi.fbank (the reference AudioMAE uses), rounded to 4 decimals.
KALDI_REFERENCE_MEAN = [
    -8.3377, -9.9712, -6.5278, -15.9424, -6.6108, -9.5895, -8.4436, -11.4427, -15.9424, -15.8671, -14.9217, -15.267,
    -14.8642, -14.9093, -15.5187, -15.9424, -15.9424, -15.7344, -13.6895, -13.9164, -13.2628, -13.9213, -15.079,
    -15.9424, -12.7148, -12.0807, -11.926, -11.7502, -13.2951, -12.4965, -10.7663, -9.9849, -9.5071, -9.7021,
    -14.5192, -8.3815, -6.8605, -6.1414, -6.2856, -5.5884, -2.0883, 1.257, 4.4182, 5.6266, 5.6019, 4.2947, 0.9994,
    -2.6241, -5.9896, -5.8215, -6.6993, -8.6529, -9.9028, -9.0917, -10.1598, -12.3734, -11.3885, -11.5228,
    -13.2709, -13.2386, -13.0069, -14.2265, -14.9, -14.2858, -15.8145, -15.8293, -15.523, -15.9424, -15.7665,
    -14.6606, -15.2469, -13.8788, -13.3871, -13.3657, -11.9557, -12.3795, -10.5819, -10.603, -8.8875, -8.2859,
    -6.3129, -4.6988, 0.8946, 6.085, 6.8313, 4.1967, -3.4826, -5.4271, -7.9763, -8.8445, -10.1582, -11.2359,
    -11.7218, -12.9404, -13.1619, -13.9106, -14.6579, -14.8249, -15.4965] + [-15.9424] * 29


def test_label_frames_are_ceil_of_tenths_of_a_second():
    assert [n_label_frames(s, 24000) for s in (1, 2400, 2401, 24000, 24001)] == [1, 1, 2, 10, 11]


def test_read_audio_checks_channels_and_files(tmp_path):
    path = write_audio(tmp_path / "c.wav", noise(4, 0.25, 24000, 0), 24000)
    audio, sr = read_audio(path, channels=4)
    assert audio.shape == (4, 6000) and sr == 24000 and audio.dtype == np.float32
    with pytest.raises(InputError, match=r"c\.wav: has 4 channel\(s\), this adapter needs 2"):
        read_audio(path, channels=2)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(InputError, match=r"bad\.wav: cannot read audio"):
        read_audio(tmp_path / "bad.wav")


def test_resample_keeps_a_tone_and_scales_length():
    t = np.arange(24000) / 24000
    out = resample(np.sin(2 * np.pi * 1000 * t)[None].astype(np.float32), 24000, 16000)
    assert out.shape == (1, 16000)
    assert np.argmax(np.abs(np.fft.rfft(out[0]))) == 1000  # 1 Hz bins over 1 s


def test_slaney_filters_have_unit_area_and_ordered_peaks():
    sr, n_fft = 24000, 8192
    fb = slaney_mel(sr, n_fft, 32)
    df = sr / n_fft
    areas = fb.sum(axis=1) * df
    np.testing.assert_allclose(areas[4:], 1.0, rtol=0.02)  # narrow low filters see too few bins to integrate
    assert (np.diff(fb.argmax(axis=1)) > 0).all()


def test_kaldi_banks_and_fbank_match_the_reference():
    banks = kaldi_mel(16000, 512, 128)
    assert banks.shape == (128, 257) and (banks[:, -1] == 0).all() and banks.max() <= 1.0
    t = torch.arange(8000, dtype=torch.float64) / 16000
    wave = (0.5 * torch.sin(2 * np.pi * 1000 * t) + 0.25 * torch.sin(2 * np.pi * 3000 * t)
            + 0.01 * torch.cos(2 * np.pi * 77 * t)).float()[None]
    fb = kaldi_fbank(wave)
    assert fb.shape == (1, 1 + (8000 - 400) // 160, 128)
    np.testing.assert_allclose(fb[0].mean(0).numpy(), KALDI_REFERENCE_MEAN, atol=2e-3)


def test_front_end_shapes_follow_label_frames():
    audio = torch.from_numpy(noise(4, 1.05, 24000, 1))
    feats = FrontEnd("logmel_iv")(audio, 11)
    assert feats.shape == (7, 55, 64)  # 11 label frames x 5 hops of 20 ms
    assert FrontEnd("logmel", n_mels=32)(audio, 11).shape == (4, 55, 32)
    raw = FrontEnd("raw")(audio, 12)
    assert raw.shape == (4, 12 * 2400) and (raw[:, 25200:] == 0).all()  # zero past the clip's end
    with pytest.raises(ValueError, match="divide 0.1 s"):
        FrontEnd(hop_s=0.03).check()


@pytest.mark.parametrize("az, el", [(60.0, 20.0), (-135.0, -40.0)])
def test_intensity_vectors_of_a_plane_wave_point_at_it(az, el):
    # one source: every channel is the W signal times its gain, so Re(W* [X,Y,Z]) / (|W|^2 (1 + 1/3)) = 0.75 d
    audio = torch.from_numpy(foa_plane_wave(az, el, 0.5, 24000))
    iv = FrontEnd("logmel_iv")(audio, 5)[4:7]  # [3, T, mels]
    d = np.array([np.cos(np.radians(az)) * np.cos(np.radians(el)), np.sin(np.radians(az)) * np.cos(np.radians(el)),
                  np.sin(np.radians(el))])
    np.testing.assert_allclose(iv[:, 2:-2].numpy(), np.broadcast_to(0.75 * d[:, None, None], iv[:, 2:-2].shape),
                               atol=1e-4)
