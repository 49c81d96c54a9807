"""Audio for the adapters: loading (soundfile), label-frame bookkeeping, resampling, features.

Label frames are those of the DCASE files: 10 per second, frame ``t`` covering
``[t / 10, (t + 1) / 10)`` s, so a clip of ``S`` samples at ``sr`` Hz has ``ceil(10 S / sr)`` frames
and its clip name is the audio file's stem (``fold4_room8_mix001.wav`` -> ``fold4_room8_mix001``).

Features are computed in float32 with torch (so they run on the model's device, outside autocast):
- ``raw``: the waveform;
- ``logmel``: per-channel log-mel power spectrogram (Slaney mel scale and area normalisation,
  ``10 log10(max(P, 1e-10))``), the usual SELD input for microphone-array audio;
- ``logmel_iv``: FOA (ACN W, Y, Z, X): 4 log-mel channels + 3 mel-band intensity-vector channels
  ``Re(conj(W) [X, Y, Z])`` divided by the mel-band energy ``|W|^2 + (|X|^2 + |Y|^2 + |Z|^2) / 3``;
- :func:`kaldi_fbank`: Kaldi-style log-mel filterbank (25 ms Hann frames, 10 ms hop, DC removal,
  0.97 pre-emphasis, 1127 ln(1 + f/700) mel scale from 20 Hz to Nyquist, natural log) -- the
  AudioMAE / AST input.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import torch

from calib.adapters.base import AdapterError
from calib.io.errors import InputError

LABEL_FPS = 10


def audio_info(path: Path) -> tuple[int, int, int]:
    """(samples, sample rate, channels) without reading the samples."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises RuntimeError / LibsndfileError
        raise InputError(path, f"cannot read audio: {e}") from None
    return info.frames, info.samplerate, info.channels


def read_audio(path: Path, channels: int | None = None) -> tuple[np.ndarray, int]:
    """[channels, samples] float32 in [-1, 1] and the sample rate."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise InputError(path, f"cannot read audio: {e}") from None
    if len(data) == 0:
        raise InputError(path, "audio has no samples")
    if channels is not None and data.shape[1] != channels:
        raise InputError(path, f"has {data.shape[1]} channel(s), this adapter needs {channels}")
    if not np.isfinite(data).all():
        raise InputError(path, "audio has non-finite samples")
    return np.ascontiguousarray(data.T), int(sr)


def n_label_frames(n_samples: int, sample_rate: int) -> int:
    return -(-n_samples * LABEL_FPS // sample_rate)


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy), float32."""
    if sr_from == sr_to:
        return x
    from scipy.signal import resample_poly

    g = gcd(sr_from, sr_to)
    return resample_poly(x, sr_to // g, sr_from // g, axis=-1).astype(np.float32)


def slaney_mel(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters on the Slaney mel scale, area-normalised."""
    fmax = sr / 2 if fmax is None else fmax
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f < min_log_hz, f / f_sp, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m < min_log_mel, m * f_sp, min_log_hz * np.exp(logstep * (m - min_log_mel)))

    hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lower = (freqs[None, :] - hz[:-2, None]) / (hz[1:-1] - hz[:-2])[:, None]
    upper = (hz[2:, None] - freqs[None, :]) / (hz[2:] - hz[1:-1])[:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return (weights * (2.0 / (hz[2:] - hz[:-2]))[:, None]).astype(np.float32)


def kaldi_mel(sr: int, padded: int, n_mels: int, low: float = 20.0, high: float | None = None) -> np.ndarray:
    """[n_mels, padded // 2 + 1] Kaldi mel banks (mel = 1127 ln(1 + f / 700)); the Nyquist bin has weight 0."""
    high = sr / 2 if not high else high
    mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # noqa: E731
    lo, hi = mel(low), mel(high)
    delta = (hi - lo) / (n_mels + 1)
    left = lo + np.arange(n_mels) * delta
    centre, right = left + delta, left + 2 * delta
    bins = mel(np.arange(padded // 2) * sr / padded)[None, :]
    up = (bins - left[:, None]) / (centre - left)[:, None]
    down = (right[:, None] - bins) / (right - centre)[:, None]
    weights = np.where((bins > left[:, None]) & (bins < right[:, None]), np.where(bins <= centre[:, None], up, down), 0.0)
    return np.pad(weights, ((0, 0), (0, 1))).astype(np.float32)


def kaldi_fbank(wave: torch.Tensor, sr: int = 16000, n_mels: int = 128, frame_ms: float = 25.0,
                shift_ms: float = 10.0, preemphasis: float = 0.97) -> torch.Tensor:
    """[B, S] waveforms -> [B, frames, n_mels] natural-log mel energies (frames = 1 + (S - win) // hop)."""
    win, hop = int(round(sr * frame_ms / 1000)), int(round(sr * shift_ms / 1000))
    if wave.shape[-1] < win:
        raise ValueError(f"{wave.shape[-1]} samples: shorter than one {frame_ms} ms frame")
    padded = 1 << (win - 1).bit_length()
    frames = wave.unfold(-1, win, hop)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = frames - preemphasis * previous
    n = torch.arange(win, dtype=torch.float64, device=wave.device)
    window = (0.5 - 0.5 * torch.cos(2 * math.pi * n / (win - 1))).to(wave.dtype)
    spec = torch.fft.rfft(frames * window, n=padded)
    power = spec.real.square() + spec.imag.square()
    banks = torch.from_numpy(kaldi_mel(sr, padded, n_mels)).to(wave.device)
    return torch.clamp(power @ banks.T, min=torch.finfo(torch.float32).eps).log()


@dataclass(frozen=True)
class FrontEnd:
    """Features of a whole clip, aligned with the label frames.

    ``raw``: [C, frames * sr / 10]; ``logmel`` / ``logmel_iv``: [C', frames * frames_per_label, n_mels]
    with ``frames_per_label = 0.1 / hop_s`` feature frames per label frame (centred STFT frames,
    zero-padded or cut to that length)."""

    kind: str = "logmel_iv"
    sample_rate: int = 24000
    hop_s: float = 0.02
    win_s: float = 0.04
    n_mels: int = 64

    def check(self) -> None:
        if self.kind not in ("raw", "logmel", "logmel_iv"):
            raise ValueError(f"features {self.kind!r}: use raw, logmel or logmel_iv")
        if self.sample_rate % LABEL_FPS:
            raise ValueError(f"sample rate {self.sample_rate} is not a multiple of {LABEL_FPS} Hz")
        if self.kind != "raw":
            hop = self.hop_s * self.sample_rate
            fpl = 1.0 / (LABEL_FPS * self.hop_s)
            if abs(hop - round(hop)) > 1e-6 or abs(fpl - round(fpl)) > 1e-6:
                raise ValueError(f"hop {self.hop_s} s must be a whole number of samples and divide 0.1 s")

    @property
    def frames_per_label(self) -> int:
        """Feature steps (samples for raw) per label frame."""
        if self.kind == "raw":
            return self.sample_rate // LABEL_FPS
        return int(round(1.0 / (LABEL_FPS * self.hop_s)))

    @property
    def channels_out(self) -> int:
        return 7 if self.kind == "logmel_iv" else 4

    def __call__(self, audio: torch.Tensor, n_frames: int) -> torch.Tensor:
        """``audio`` [C, S] float32 at ``sample_rate``; returns features covering ``n_frames`` label frames."""
        steps = n_frames * self.frames_per_label
        if self.kind == "raw":
            return _fit(audio, steps, dim=-1)
        hop = int(round(self.hop_s * self.sample_rate))
        win = int(round(self.win_s * self.sample_rate))
        n_fft = 1 << (win - 1).bit_length()
        window = torch.hann_window(win, periodic=True, dtype=audio.dtype, device=audio.device)
        spec = torch.stft(audio, n_fft, hop_length=hop, win_length=win, window=window, center=True,
                          pad_mode="constant", return_complex=True)  # [C, bins, T]
        banks = torch.from_numpy(slaney_mel(self.sample_rate, n_fft, self.n_mels)).to(audio.device)
        power = spec.real.square() + spec.imag.square()
        mel = torch.einsum("cft,mf->ctm", power, banks)
        feats = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        if self.kind == "logmel_iv":
            if audio.shape[0] != 4:
                raise ValueError("logmel_iv needs 4 FOA channels (W, Y, Z, X)")
            w = spec[0]
            xyz = spec[[3, 1, 2]]
            intensity = (w.conj()[None] * xyz).real  # [3, bins, T]
            energy = power[0] + power[1:].sum(0) / 3.0
            iv = torch.einsum("cft,mf->ctm", intensity, banks) / (torch.einsum("ft,mf->tm", energy, banks)[None] + 1e-8)
            feats = torch.cat([feats, iv], dim=0)
        return _fit(feats, steps, dim=1)


def _fit(x: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """Cut or zero-pad ``x`` along ``dim`` to ``length``."""
    size = x.shape[dim]
    if size >= length:
        return x.narrow(dim, 0, length)
    pad_shape = list(x.shape)
    pad_shape[dim] = length - size
    return torch.cat([x, x.new_zeros(pad_shape)], dim=dim)


# ---------------------------------------------------------------------------------------------------
# shared by the adapters that feed audio features to a model
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def front_end(adapter) -> FrontEnd:
    fe = FrontEnd(kind=adapter.features, sample_rate=int(adapter.sample_rate), hop_s=float(adapter.hop_s),
                  win_s=float(adapter.win_s), n_mels=int(adapter.n_mels))
    try:
        fe.check()
    except ValueError as e:
        raise AdapterError(f"adapter {adapter.name!r}: {e}") from None
    return fe


def clip_audio(path: Path, fe: FrontEnd, device: torch.device, channels: int = 4) -> tuple[torch.Tensor, int]:
    """[channels, samples] float32 tensor at the front end's rate, and the clip's label-frame count."""
    audio, sr = read_audio(path, channels=channels)
    n_frames = n_label_frames(audio.shape[1], sr)
    audio = resample(audio, sr, fe.sample_rate)
    return torch.from_numpy(audio).to(device), n_frames


FRONT_END_DEFAULTS = {"features": "logmel_iv", "sample_rate": 24000, "hop_s": 0.02, "win_s": 0.04, "n_mels": 64}
FRONT_END_HELP = {
    "features": "model input from audio: raw (waveform), logmel (per channel), logmel_iv (FOA: 4 log-mel + 3 intensity vectors)",
    "sample_rate": "audio is resampled to this rate (Hz) before features",
    "hop_s": "feature hop in seconds (must divide the 0.1 s label frame)",
    "win_s": "STFT window in seconds",
    "n_mels": "mel bands",
}
