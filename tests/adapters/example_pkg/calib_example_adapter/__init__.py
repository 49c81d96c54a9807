"""An example third-party adapter: class priors from the per-channel loudness of 2-s windows.

model: ``p = sigmoid(W @ log10(rms + 1e-8) + b)`` with ``rms`` the per-channel RMS of each window.
Installing this package makes ``calib adapt window-rms-prior ...`` work (see pyproject.toml).
"""
from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import nn

from calib.adapters.audio import n_label_frames, read_audio
from calib.adapters.torch_adapter import Block, TorchAdapter, batches, to_numpy
from calib.constants import N_CLASSES

LABEL_RATE = 10


class RmsLinear(nn.Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.linear = nn.Linear(channels, N_CLASSES)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:  # [B, C, samples] -> [B, 13]
        rms = windows.square().mean(dim=-1).sqrt()
        return torch.sigmoid(self.linear(torch.log10(rms + 1e-8)))


class WindowRmsPrior(TorchAdapter):
    name = "window-rms-prior"
    kind = "priors"
    description = "per-channel RMS of 2-s windows -> linear -> sigmoid class priors (an example plug-in)"
    input_help = "audio files"
    input_suffixes = (".wav", ".flac")
    architectures = {"rms-linear": RmsLinear}
    defaults = {"window_frames": 20}
    param_help = {"window_frames": "label frames per window"}

    def run(self, inputs, *, batch_size=8, progress=False):
        self._check_loaded()
        w = int(self.window_frames)

        def blocks():
            for path in inputs:
                audio, sr = read_audio(path)
                n = n_label_frames(audio.shape[1], sr)
                starts = np.arange(0, n, w)
                step = sr // LABEL_RATE * w
                padded = np.pad(audio, ((0, 0), (0, len(starts) * step - audio.shape[1])))
                x = torch.from_numpy(padded.reshape(audio.shape[0], len(starts), step).transpose(1, 0, 2).copy())
                yield Block(path.stem, x, {"start": starts, "end": np.minimum(starts + w, n)})

        for batch in batches(blocks(), batch_size):
            probs = to_numpy(self.forward(batch.x.to(self.device_)))
            yield pl.DataFrame({"clip": batch.clip.astype(str), "start_frame": batch.meta["start"],
                                "end_frame": batch.meta["end"]} | {f"p_{k}": probs[:, k] for k in range(N_CLASSES)})
