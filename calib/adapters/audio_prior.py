"""``audio-prior``: clip-level class priors over 2-s windows from a frozen ViT encoder + MLP head.

Per clip: the channels are averaged to mono, resampled to 16 kHz, cut into windows of
``window_frames`` label frames every ``hop_frames`` (from frame 0; the last window zero-padded),
each window's mean removed; a Kaldi-style 128-bin log-mel filterbank (25 ms frames, 10 ms hop) is
zero-padded or cut to the encoder's ``img_size[0]`` frames and normalised as AudioMAE does,
``(fbank - norm_mean) / (2 norm_std)``; the ViT + head give 13 logits, turned into probabilities by
``activation``. Rows: clip, start_frame, end_frame (exclusive, at most the clip's frame count),
p_0 .. p_12.

Architecture ``audiomae-vit-prior`` (:class:`calib.adapters.vit.AudioPriorNet`) takes timm
ViT parameters (img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
class_token, global_pool) plus ``head_hidden`` and ``n_classes``; its state_dict keys are timm's
(``patch_embed.proj.weight``, ``blocks.0.attn.qkv.weight``, ...) plus ``head.layers.N.*``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import polars as pl
import torch
from scipy.special import expit

from calib.adapters.audio import AUDIO_SUFFIXES, audio_info, kaldi_fbank, n_label_frames, read_audio, resample
from calib.adapters.base import AdapterError
from calib.adapters.torch_adapter import Block, TorchAdapter, batches, progress_bar, to_numpy
from calib.adapters.vit import AudioPriorNet
from calib.constants import N_CLASSES
from calib.tables import conform

PRIOR_RATE = 16000
SAMPLES_PER_FRAME = PRIOR_RATE // 10


class AudioPriorAdapter(TorchAdapter):
    name = "audio-prior"
    kind = "priors"
    description = ("4-channel audio -> mono 16 kHz -> 128-bin log-mel over 2-s windows -> frozen ViT "
                   "(AudioMAE-shaped) + MLP head -> class priors per window")
    input_help = "audio files (.wav/.flac/.ogg), any channel count (averaged to mono)"
    input_suffixes = AUDIO_SUFFIXES
    architectures = {"audiomae-vit-prior": AudioPriorNet}
    defaults = {"window_frames": 20, "hop_frames": 20, "n_mels": 128, "norm_mean": -4.2677393, "norm_std": 4.5689974,
                "target_frames": None, "activation": "sigmoid"}
    param_help = {
        "window_frames": "label frames per window (20 = 2 s)",
        "hop_frames": "label frames between window starts",
        "n_mels": "mel bins of the filterbank (the encoder's img_size[1])",
        "norm_mean": "filterbank normalisation mean (AudioMAE's AudioSet value by default)",
        "norm_std": "filterbank normalisation std",
        "target_frames": "filterbank frames fed to the encoder (default: the encoder's img_size[0])",
        "activation": "sigmoid (multi-label logits), softmax, or none (module outputs probabilities)",
    }

    def load(self, checkpoint_path, device=None):
        if int(self.window_frames) < 1 or int(self.hop_frames) < 1:
            raise AdapterError("window_frames and hop_frames must be at least 1")
        if self.activation not in ("sigmoid", "softmax", "none"):
            raise AdapterError(f"activation {self.activation!r}: use sigmoid, softmax or none")
        super().load(checkpoint_path, device)
        target = self.target_frames
        if target is None:
            img_size = getattr(self.module_, "img_size", None)
            if img_size is None:
                raise AdapterError("the module does not say its input size; set the target_frames parameter")
            target = img_size[0]
        self.target_frames_ = int(target)
        return self

    def windows(self, path: Path) -> tuple[torch.Tensor, np.ndarray, int]:
        """[windows, samples] 16-kHz mono windows, their start frames, and the clip's frame count."""
        audio, sr = read_audio(path)
        n_frames = n_label_frames(audio.shape[1], sr)
        mono = resample(audio.mean(axis=0, dtype=np.float64).astype(np.float32), sr, PRIOR_RATE)
        starts = np.arange(0, n_frames, int(self.hop_frames), dtype=np.int64)
        length = int(self.window_frames) * SAMPLES_PER_FRAME
        need = int(starts[-1]) * SAMPLES_PER_FRAME + length
        wave = torch.from_numpy(np.pad(mono[:need], (0, max(0, need - len(mono))))).to(self.device_)
        win = wave.unfold(0, length, int(self.hop_frames) * SAMPLES_PER_FRAME)[: len(starts)]
        return win - win.mean(dim=1, keepdim=True), starts, n_frames

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, samples] -> normalised [B, 1, target_frames, n_mels] (float32, outside autocast)."""
        fbank = kaldi_fbank(wave, PRIOR_RATE, int(self.n_mels))
        t = self.target_frames_
        fbank = fbank[:, :t] if fbank.shape[1] >= t else torch.nn.functional.pad(fbank, (0, 0, 0, t - fbank.shape[1]))
        return ((fbank - float(self.norm_mean)) / (2.0 * float(self.norm_std))).unsqueeze(1)

    def run(self, inputs: Sequence[Path], *, batch_size: int = 8, progress: bool = False) -> Iterator[pl.DataFrame]:
        self._check_loaded()
        files = [Path(p) for p in inputs]
        bar = progress_bar(sum(n_label_frames(*audio_info(f)[:2]) for f in files), self.name, progress)

        def blocks():
            for f in files:
                wave, starts, n_frames = self.windows(f)
                yield Block(f.stem, wave, {"start": starts, "n_frames": np.full(len(starts), n_frames)})

        try:
            for batch in batches(blocks(), batch_size):
                with torch.inference_mode():
                    feats = self.features(batch.x)
                logits = to_numpy(self.forward(feats))
                yield self.rows(logits, batch)
                ends = np.minimum(batch.meta["start"] + int(self.hop_frames), batch.meta["n_frames"])
                bar.update(int((ends - batch.meta["start"]).clip(0).sum()))
        finally:
            bar.close()

    def rows(self, logits: np.ndarray, batch) -> pl.DataFrame:
        if logits.ndim != 2 or logits.shape[1] != N_CLASSES:
            raise AdapterError(f"clip {batch.clip[0]}: module output shape {logits.shape}, expected [B, {N_CLASSES}]")
        if self.activation == "sigmoid":
            probs = expit(logits)
        elif self.activation == "softmax":
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = z / z.sum(axis=1, keepdims=True)
        else:
            probs = logits
        bad = np.flatnonzero(~((probs >= 0) & (probs <= 1)).all(axis=1))
        if bad.size:
            raise AdapterError(f"clip {batch.clip[bad[0]]}, window at frame {batch.meta['start'][bad[0]]}: "
                               "probabilities outside [0, 1] (set activation to sigmoid or softmax)")
        start = batch.meta["start"]
        df = pl.DataFrame({"clip": batch.clip.astype(str), "start_frame": start,
                           "end_frame": np.minimum(start + int(self.window_frames), batch.meta["n_frames"])}
                          | {f"p_{k}": probs[:, k] for k in range(N_CLASSES)})
        return conform(df, "priors", where=f"adapter {self.name}")
