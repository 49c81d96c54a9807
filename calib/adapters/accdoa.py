"""``accdoa``: a multi-ACCDOA SELD model -> a teacher (directions) table.

The module gets a batch of chunks ``x`` [B, C, steps, F] (features of ``chunk_frames`` label
frames; ``features`` as in :mod:`calib.adapters.audio`, raw audio gives [B, C, samples]) and returns
the multi-ACCDOA output for each chunk's label frames, either
``[B, chunk_frames, tracks, 13, 3 or 4]`` or flat ``[B, chunk_frames, tracks * (3 or 4) * 13]`` in
the DCASE baseline's order (track, then axis x/y/z(/distance), then class). A (track, class) is
active in a frame where the norm of its (x, y, z) vector exceeds ``threshold``; its direction
(azimuth = atan2(y, x), elevation = atan2(z, hypot(x, y))) and the 4th component times
``distance_scale`` (cm) become a row: clip, frame, class_id, track, azimuth, elevation, distance,
x, y (canvas) and ``feat_activity`` (the norm). Clips are cut into chunks from frame 0, the last
one zero-padded; rows past the clip's end are dropped.

``acs=true`` runs the 8 audio-channel-swap views (:mod:`calib.adapters.acs`) of every chunk, maps
each view's directions back to the original frame and tags rows with ``view`` (0 = as recorded),
ready for a fusion stage.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import polars as pl
import torch

from calib.adapters import acs
from calib.adapters.audio import (AUDIO_SUFFIXES, FRONT_END_DEFAULTS, FRONT_END_HELP, audio_info, clip_audio,
                                  front_end, n_label_frames)
from calib.adapters.base import AdapterError
from calib.adapters.torch_adapter import Block, TorchAdapter, batches, progress_bar, to_numpy
from calib.constants import N_CLASSES
from calib.io.seld import cartesian_to_polar, to_canvas
from calib.tables import conform


class AccdoaAdapter(TorchAdapter):
    name = "accdoa"
    kind = "teacher"
    description = ("multi-ACCDOA SELD model [frames, tracks, classes, 3(+distance)] -> per-track directions "
                   "where the vector norm exceeds a threshold; optional 8-view ACS test-time augmentation")
    input_help = "4-channel audio files (.wav/.flac/.ogg), FOA (W, Y, Z, X) or tetrahedral MIC"
    input_suffixes = AUDIO_SUFFIXES
    defaults = FRONT_END_DEFAULTS | {
        "audio_format": "foa", "chunk_frames": 50, "tracks": 3, "threshold": 0.5, "distance_scale": 1.0, "acs": False,
    }
    param_help = FRONT_END_HELP | {
        "audio_format": "foa (ACN W, Y, Z, X) or mic (tetrahedral array): decides the ACS channel swaps",
        "chunk_frames": "label frames per model input chunk (the model must return as many frames)",
        "tracks": "tracks of a flat [frames, tracks*K*13] output",
        "threshold": "a (track, class) is active where its ACCDOA vector norm exceeds this",
        "distance_scale": "factor from the model's 4th component to cm",
        "acs": "run the 8 channel-swap views and add a 'view' column",
    }

    def load(self, checkpoint_path, device=None):
        if int(self.chunk_frames) < 1 or int(self.tracks) < 1:
            raise AdapterError("chunk_frames and tracks must be at least 1")
        try:
            self.views_ = acs.views(self.audio_format) if self.acs else [(np.eye(3), np.eye(4))]
        except ValueError as e:
            raise AdapterError(str(e)) from None
        self.front_end_ = front_end(self)
        return super().load(checkpoint_path, device)

    def chunks(self, path: Path) -> tuple[torch.Tensor, int]:
        """[chunks * views, ...] inputs of one clip (chunk-major) and its label-frame count."""
        fe = self.front_end_
        audio, n_frames = clip_audio(path, fe, self.device_)
        chunk = int(self.chunk_frames)
        n_chunks = max(1, -(-n_frames // chunk))
        per_view = []
        for _, mix in self.views_:
            swapped = torch.from_numpy(mix.astype(np.float32)).to(audio.device) @ audio if self.acs else audio
            feats = fe(swapped, n_chunks * chunk)  # [C, n_chunks*chunk*fpl, (F)]
            shape = (feats.shape[0], n_chunks, chunk * fe.frames_per_label) + tuple(feats.shape[2:])
            per_view.append(feats.reshape(shape).transpose(0, 1))  # [n_chunks, C, steps, (F)]
        x = torch.stack(per_view, dim=1)  # [n_chunks, views, ...]
        return x.reshape((n_chunks * len(self.views_),) + tuple(x.shape[2:])), n_frames

    def run(self, inputs: Sequence[Path], *, batch_size: int = 8, progress: bool = False) -> Iterator[pl.DataFrame]:
        self._check_loaded()
        files = [Path(p) for p in inputs]
        n_views = len(self.views_)
        totals = [n_label_frames(*audio_info(f)[:2]) for f in files]
        bar = progress_bar(sum(totals), self.name, progress)

        def blocks():
            for f in files:
                x, n_frames = self.chunks(f)
                n_chunks = len(x) // n_views
                meta = {"chunk": np.repeat(np.arange(n_chunks), n_views), "view": np.tile(np.arange(n_views), n_chunks),
                        "n_frames": np.full(len(x), n_frames)}
                yield Block(f.stem, x, meta)

        try:
            for batch in batches(blocks(), batch_size):
                y = self.accdoa(to_numpy(self.forward(batch.x)), batch.clip[0])
                yield self.rows(y, batch)
                starts = batch.meta["chunk"] * int(self.chunk_frames)
                covered = np.clip(batch.meta["n_frames"] - starts, 0, int(self.chunk_frames))
                bar.update(int(covered[batch.meta["view"] == 0].sum()))
        finally:
            bar.close()

    def accdoa(self, y: np.ndarray, clip: str) -> np.ndarray:
        """Module output -> [B, chunk_frames, tracks, classes, K]."""
        chunk = int(self.chunk_frames)
        if y.ndim == 3:
            b, f, width = y.shape
            t = int(self.tracks)
            if width % (t * N_CLASSES) or width // (t * N_CLASSES) not in (3, 4):
                raise AdapterError(f"clip {clip}: flat output width {width} is not tracks ({t}) x 3 or 4 x {N_CLASSES}")
            y = y.reshape(b, f, t, width // (t * N_CLASSES), N_CLASSES).transpose(0, 1, 2, 4, 3)
        if y.ndim != 5 or y.shape[3] != N_CLASSES or y.shape[4] not in (3, 4):
            raise AdapterError(f"clip {clip}: module output shape {y.shape}; expected [B, frames, tracks, {N_CLASSES}, 3|4]"
                               f" or flat [B, frames, tracks*(3|4)*{N_CLASSES}]")
        if y.shape[1] != chunk:
            raise AdapterError(f"clip {clip}: module returned {y.shape[1]} frames for a chunk of {chunk} label "
                               "frames; set chunk_frames to the model's input length")
        if not np.isfinite(y).all():
            raise AdapterError(f"clip {clip}: module output has non-finite values")
        return y

    def rows(self, y: np.ndarray, batch) -> pl.DataFrame:
        b, f, t, c, k = y.shape
        vec = y[..., :3]
        norm = np.linalg.norm(vec, axis=-1)  # [B, f, t, c]
        frame = batch.meta["chunk"][:, None] * f + np.arange(f)[None, :]  # [B, f]
        inside = frame < batch.meta["n_frames"][:, None]
        active = (norm > float(self.threshold)) & inside[:, :, None, None]
        ib, jf, jt, jc = np.nonzero(active)
        view = batch.meta["view"][ib]
        rot = np.stack([r for r, _ in self.views_])[view]  # [n, 3, 3]
        direction = np.einsum("nij,ni->nj", rot, vec[ib, jf, jt, jc])  # R.T @ v': back to the recorded frame
        az, el = cartesian_to_polar(direction[:, 0], direction[:, 1], direction[:, 2])
        x, y_canvas = to_canvas(az, el)
        dist = y[ib, jf, jt, jc, 3] * float(self.distance_scale) if k == 4 else np.full(len(ib), np.nan)
        df = pl.DataFrame({
            "clip": batch.clip[ib].astype(str),
            "frame": frame[ib, jf].astype(np.int64),
            "class_id": jc.astype(np.int64),
            "track": jt.astype(np.int64),
            "azimuth": az, "elevation": el,
            "distance": pl.Series(dist, dtype=pl.Float64).fill_nan(None),
            "x": x, "y": y_canvas,
            "feat_activity": norm[ib, jf, jt, jc],
        })
        if self.acs:
            df = df.with_columns(pl.Series("view", view.astype(np.int64)))
        return conform(df, "teacher", where=f"adapter {self.name}")
