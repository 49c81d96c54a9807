"""``energy-instance``: an instance-segmentation model on the canvas -> a detections table.

The module gets a batch of per-frame inputs ``x`` [B, ...] and returns, torchvision style, a list of
B dicts, one per frame:

- ``boxes`` [N, 4] float (x1, y1, x2, y2) in the model's canvas coordinates (``canvas_size`` W x H,
  360 x 180 by default; x may run past 0 or W across the seam),
- ``labels`` [N] int, 1-based (1 = class 0, ..., 13 = class 12; 0 is torchvision's background),
- ``scores`` [N] float,
- ``energy`` (or ``masks``) [N, H, W] or [N, 1, H, W]: box-relative energy maps (e.g. 28 x 28
  sigmoid outputs of a mask head; with ``map_frame=canvas``, maps covering the whole model canvas,
  as torchvision's pasted masks do); negative values count as 0,
- optionally ``distances`` [N]: multiplied by ``distance_scale`` into the table's cm.

Per-frame inputs come from ``--input`` files: audio (``.wav``/``.flac``/``.ogg``, 4 channels) gives,
for label frame t, the features of a window of ``window_frames`` label frames centred on t
(zero beyond the clip; see :mod:`calib.adapters.audio` for ``features``); a ``.npy`` array
[frames, ...] gives row t as frame t's input as it is (e.g. acoustic images you computed).
Points come from the maps by :func:`calib.adapters.points.map_points` (``points`` = dense | grid);
``emit`` then optionally re-emits them through calib's emitter stages (``grid``, ``dense``, ``hull``,
``gaussian``, ``compress`` ... as in a recipe), batch by batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import torch

from calib.adapters.audio import (AUDIO_SUFFIXES, FRONT_END_DEFAULTS, FRONT_END_HELP, audio_info, clip_audio,
                                  front_end, n_label_frames)
from calib.adapters.base import AdapterError
from calib.adapters.points import CANVAS_H, CANVAS_W, map_points
from calib.adapters.torch_adapter import Block, TorchAdapter, batches, progress_bar, to_numpy
from calib.constants import N_CLASSES
from calib.io.errors import InputError
from calib.stages.base import Tables
from calib.tables import conform

def emit_stages(spec) -> list:
    """Emitter stages from a recipe-style entry ``{"type": name, **params}`` or a list of them."""
    if not spec:
        return []
    from calib.stages.base import UnknownStageError, make_stage

    entries = [spec] if isinstance(spec, dict) else list(spec)
    try:
        return [make_stage(e) for e in entries]
    except (UnknownStageError, ValueError, TypeError) as e:
        raise AdapterError(f"emit {spec!r}: {e}") from None


class EnergyInstanceAdapter(TorchAdapter):
    name = "energy-instance"
    kind = "detections"
    description = ("instance model returning torchvision-style dicts per frame (boxes, 1-based labels, scores, "
                   "box-relative energy maps, distances) -> detections with canvas points")
    input_help = "4-channel audio files (.wav/.flac/.ogg) or .npy arrays [frames, ...] of per-frame model inputs"
    input_suffixes = AUDIO_SUFFIXES + (".npy",)
    defaults = FRONT_END_DEFAULTS | {
        "window_frames": 1, "canvas_size": [360, 180], "map_frame": "box", "points": "dense", "grid": 3,
        "min_rel_energy": 0.1,
        "min_score": 0.0, "distance_scale": 1.0, "system": "", "emit": None,
    }
    param_help = FRONT_END_HELP | {
        "window_frames": "label frames of audio each per-frame input sees, centred on the frame",
        "canvas_size": "[W, H] of the model's box coordinates; scaled to the 360 x 180 canvas",
        "map_frame": "box (maps span their box, e.g. a 28x28 mask head) or canvas (maps span the whole model "
                     "canvas, e.g. torchvision's pasted masks; points=dense only)",
        "points": "dense (a point per map cell >= min_rel_energy x peak) or grid (grid x grid block means)",
        "grid": "grid size k for points=grid",
        "min_rel_energy": "points=dense: keep cells with energy >= this fraction of the map's peak",
        "min_score": "drop detections scoring below this",
        "distance_scale": "factor from the model's distances to cm",
        "system": "system name in the table (default: the checkpoint's file stem)",
        "emit": "emitter stage(s) re-emitting the mapped points, recipe style: {'type': 'grid', 'n': 3} or a list",
    }

    def load(self, checkpoint_path, device=None):
        if self.points not in ("dense", "grid"):
            raise AdapterError(f"points {self.points!r}: use dense or grid")
        if self.map_frame not in ("box", "canvas"):
            raise AdapterError(f"map_frame {self.map_frame!r}: use box or canvas")
        if self.map_frame == "canvas" and self.points == "grid":
            raise AdapterError("points=grid pools a box-relative map; with map_frame=canvas use points=dense")
        if int(self.window_frames) < 1 or int(self.grid) < 1:
            raise AdapterError("window_frames and grid must be at least 1")
        self.system_ = self.system or Path(checkpoint_path).stem
        self.emitters_ = emit_stages(self.emit)
        self.front_end_ = front_end(self)
        return super().load(checkpoint_path, device)

    # ---------------------------------------------------------------------------------------------
    def frame_count(self, path: Path) -> int:
        if path.suffix.lower() == ".npy":
            return len(np.load(path, mmap_mode="r", allow_pickle=False))
        samples, sr, _ = audio_info(path)
        return n_label_frames(samples, sr)

    def frame_inputs(self, path: Path) -> torch.Tensor:
        """[frames, ...] model inputs of one clip."""
        if path.suffix.lower() == ".npy":
            try:
                arr = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise InputError(path, f"not a numeric .npy array ({e})") from None
            if arr.ndim < 1 or not np.issubdtype(arr.dtype, np.number):
                raise InputError(path, f"expected a numeric array [frames, ...], got {arr.dtype} {arr.shape}")
            return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(self.device_)
        fe = self.front_end_
        audio, n_frames = clip_audio(path, fe, self.device_)
        feats = fe(audio, n_frames)  # [C, n*fpl, F] or raw [C, n*spl]
        w, step = int(self.window_frames), fe.frames_per_label
        left, right = (w // 2) * step, (w - 1 - w // 2) * step
        pad = [0, 0, left, right] if feats.ndim == 3 else [left, right]
        feats = torch.nn.functional.pad(feats, pad)
        windows = feats.unfold(1, w * step, step)  # [C, n, (F,) w*step]
        return windows.permute(1, 0, 3, 2) if feats.ndim == 3 else windows.permute(1, 0, 2)

    def run(self, inputs: Sequence[Path], *, batch_size: int = 8, progress: bool = False) -> Iterator[pl.DataFrame]:
        self._check_loaded()
        files = [Path(p) for p in inputs]
        det_counter: dict[str, int] = {}
        bar = progress_bar(sum(self.frame_count(f) for f in files), self.name, progress)

        def blocks():
            for f in files:
                x = self.frame_inputs(f)
                yield Block(f.stem, x, {"frame": np.arange(len(x), dtype=np.int64)})

        try:
            for batch in batches(blocks(), batch_size):
                outputs = self.forward(batch.x)
                yield self.rows(outputs, batch.clip, batch.meta["frame"], det_counter)
                bar.update(len(batch.clip))
        finally:
            bar.close()

    # ---------------------------------------------------------------------------------------------
    def rows(self, outputs, clips: np.ndarray, frames: np.ndarray, det_counter: dict[str, int]) -> pl.DataFrame:
        """Detections rows of one batch of module outputs."""
        if not isinstance(outputs, (list, tuple)) or len(outputs) != len(clips):
            raise AdapterError(f"module must return a list of {len(clips)} dicts (one per frame), "
                               f"got {type(outputs).__name__}" + (f" of {len(outputs)}" if hasattr(outputs, "__len__") else ""))
        parts = [self._frame_arrays(out, clips[i], int(frames[i])) for i, out in enumerate(outputs)]
        counts = np.array([len(p["scores"]) for p in parts], dtype=np.int64)
        boxes = np.concatenate([p["boxes"] for p in parts]) if parts else np.zeros((0, 4))
        n = int(counts.sum())
        map_shapes = {p["energy"].shape[1:] for p in parts if len(p["energy"])}
        if len(map_shapes) > 1:
            raise AdapterError(f"energy maps of different sizes in one batch: {sorted(map_shapes)}")
        hw = map_shapes.pop() if map_shapes else (1, 1)
        maps = np.concatenate([p["energy"].reshape(-1, *hw) for p in parts])
        labels = np.concatenate([p["labels"] for p in parts])
        scores = np.concatenate([p["scores"] for p in parts])
        distances = np.concatenate([p["distances"] for p in parts])
        det_clip = np.repeat(clips, counts)
        det_frame = np.repeat(frames, counts)
        keep = scores >= float(self.min_score)
        det_clip, det_frame, boxes, maps, labels, scores, distances = (
            a[keep] for a in (det_clip, det_frame, boxes, maps, labels, scores, distances))
        n = int(keep.sum())
        det_id = np.empty(n, dtype=np.int64)
        for clip in dict.fromkeys(det_clip.tolist()):  # per clip present in the batch (few), not per row
            sel = np.flatnonzero(det_clip == clip)
            start = det_counter.get(clip, 0)
            det_id[sel] = start + np.arange(len(sel))
            det_counter[clip] = start + len(sel)
        w, h = (float(v) for v in self.canvas_size)
        map_boxes = boxes if self.map_frame == "box" else np.tile([0.0, 0.0, w, h], (n, 1))
        points = map_points(map_boxes, np.maximum(maps, 0.0), mode=self.points, grid=int(self.grid),
                            min_rel_energy=float(self.min_rel_energy), box_scale=(CANVAS_W / w, CANVAS_H / h))
        table = pa.table({
            "system": pa.array([self.system_] * n, pa.string()),
            "clip": pa.array(det_clip.tolist(), pa.string()),
            "frame": pa.array(det_frame),
            "det_id": pa.array(det_id),
            "class_id": pa.array(labels - 1),
            "score": pa.array(scores),
            "distance": pa.array(distances * float(self.distance_scale), from_pandas=True),
            "instance_id": pa.nulls(n, pa.int64()),
            "points": points,
            "extra": pa.nulls(n, pa.string()),
        })
        df = conform(pl.from_arrow(table), "detections", where=f"adapter {self.name}")
        for stage in self.emitters_:
            df = stage.apply(Tables(detections=df))["detections"]
        return df

    def _frame_arrays(self, out, clip: str, frame: int) -> dict[str, np.ndarray]:
        where = f"clip {clip}, frame {frame}"
        if not isinstance(out, dict):
            raise AdapterError(f"{where}: module output is {type(out).__name__}, expected a dict")
        missing = [k for k in ("boxes", "labels", "scores") if k not in out]
        energy_key = "energy" if "energy" in out else "masks"
        if energy_key not in out:
            missing.append("energy (or masks)")
        if missing:
            raise AdapterError(f"{where}: module output lacks {missing}; has {sorted(out)}")
        boxes = to_numpy(out["boxes"]).reshape(-1, 4)
        n = len(boxes)
        labels = out["labels"].detach().cpu().numpy().astype(np.int64).reshape(-1)
        scores = to_numpy(out["scores"]).reshape(-1)
        energy = to_numpy(out[energy_key])
        if energy.ndim == 4 and energy.shape[1] == 1:
            energy = energy[:, 0]
        dist_key = "distances" if "distances" in out else ("distance" if "distance" in out else None)
        distances = to_numpy(out[dist_key]).reshape(-1) if dist_key else np.full(n, np.nan)
        if not (len(labels) == len(scores) == len(distances) == n and energy.ndim == 3 and len(energy) == n):
            raise AdapterError(f"{where}: inconsistent shapes boxes {boxes.shape}, labels {labels.shape}, "
                               f"scores {scores.shape}, {energy_key} {energy.shape}, distances {distances.shape}")
        bad = np.flatnonzero((labels < 1) | (labels > N_CLASSES))
        if bad.size:
            raise AdapterError(f"{where}: label {labels[bad[0]]} outside 1..{N_CLASSES} (labels are 1-based)")
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all() and np.isfinite(energy).all()):
            raise AdapterError(f"{where}: non-finite box, score or energy value")
        return {"boxes": boxes, "labels": labels, "scores": scores, "energy": energy, "distances": distances}
