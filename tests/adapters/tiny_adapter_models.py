"""Small torch modules for the adapter tests and benchmark, built from a seed (random weights).

Referenced from model configs by import path, e.g. ``tiny_adapter_models:TinyInstance`` (this
folder is on sys.path under pytest and in the CLI subprocesses the tests start)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

N_CLASSES = 13


class TinyInstance(nn.Module):
    """Per-frame input [B, ...] -> torchvision-style dicts with ``per_frame`` detections each.

    Boxes run from x1 in [-30, 330] so some cross the seam; maps are sigmoid outputs."""

    def __init__(self, per_frame: int = 2, map_size: int = 28, features: int = 16, seed: int = 0,
                 with_distance: bool = True):
        super().__init__()
        torch.manual_seed(seed)
        self.per_frame, self.map_size, self.features, self.with_distance = per_frame, map_size, features, with_distance
        k = per_frame
        self.box = nn.Linear(features, 4 * k)
        self.cls = nn.Linear(features, N_CLASSES * k)
        self.energy = nn.Linear(features, 16 * k)
        self.up = nn.Linear(16, map_size * map_size)
        self.dist = nn.Linear(features, k)

    def forward(self, x: torch.Tensor):
        b, k = len(x), self.per_frame
        h = F.adaptive_avg_pool1d(x.reshape(b, 1, -1).float(), self.features).reshape(b, -1)
        h = torch.tanh(h * 3.0)
        raw = torch.sigmoid(self.box(h)).reshape(b, k, 4)
        x1 = raw[..., 0] * 360.0 - 30.0
        y1 = raw[..., 1] * 150.0
        boxes = torch.stack([x1, y1, x1 + 10 + raw[..., 2] * 50, y1 + 5 + raw[..., 3] * 25], dim=-1)
        logits = self.cls(h).reshape(b, k, N_CLASSES)
        scores, labels = torch.softmax(logits, -1).max(-1)
        maps = torch.sigmoid(self.up(torch.tanh(self.energy(h).reshape(b, k, 16))) * 4.0)
        maps = maps.reshape(b, k, 1, self.map_size, self.map_size)
        dist = F.softplus(self.dist(h)) * 2.0
        out = []
        for i in range(b):
            d = {"boxes": boxes[i], "labels": labels[i] + 1, "scores": scores[i], "masks": maps[i]}
            if self.with_distance:
                d["distances"] = dist[i]
            out.append(d)
        return out


class TinyAccdoa(nn.Module):
    """[B, C, T, F] (or raw [B, C, S]) -> multi-ACCDOA [B, frames, tracks, 13, K] (or the flat baseline layout)."""

    def __init__(self, in_channels: int = 7, frames: int = 50, tracks: int = 3, k: int = 4, flat: bool = False,
                 hidden: int = 32, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.frames, self.tracks, self.k, self.flat = frames, tracks, k, flat
        self.conv = nn.Conv1d(in_channels, hidden, kernel_size=3, padding=1)
        self.out = nn.Linear(hidden, tracks * k * N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.mean(dim=-1)  # [B, C, T]
        h = torch.relu(self.conv(x))
        h = F.adaptive_avg_pool1d(h, self.frames).transpose(1, 2)  # [B, frames, hidden]
        y = torch.tanh(self.out(h) * 4.0)  # flat baseline layout: track, axis, class
        if self.flat:
            return y
        return y.reshape(-1, self.frames, self.tracks, self.k, N_CLASSES).transpose(3, 4)


class IntensityAccdoa(nn.Module):
    """A "physical" ACCDOA model on logmel_iv features: class 0, track 0 gets the chunk's mean intensity
    vector (channels 4..6 = IV x, y, z) per frame, scaled to unit length; everything else 0.

    Its direction is the sound's, so ACS views must agree after mapping back."""

    def __init__(self, frames: int = 10, tracks: int = 2):
        super().__init__()
        self.frames, self.tracks = frames, tracks
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = x.shape
        iv = x[:, 4:7].mean(dim=-1)  # [B, 3, T]
        iv = F.adaptive_avg_pool1d(iv, self.frames).transpose(1, 2)  # [B, frames, 3]
        unit = iv / iv.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        y = torch.zeros(b, self.frames, self.tracks, N_CLASSES, 3) + self.dummy
        y[:, :, 0, 0, :] = unit
        return y


class FixedInstance(nn.Module):
    """Input [B, 1] holding the frame index t. Every frame: detection A (class 2, score 0.5 + t/8, box over
    the seam, 2x2 map [[1, 1/16], [1/2, 0]] * gain, distance 1.5 + t); odd frames also detection B
    (class 12, score 1/16, box (0, 0, 36, 18), map [[1/4, 1/2], [0, 1/8]] * gain, distance 1)."""

    def __init__(self, bad_label: bool = False):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))
        self.bad_label = bad_label

    def forward(self, x: torch.Tensor):
        out = []
        for t in x[:, 0].tolist():
            t = int(t)
            boxes, labels, scores = [[350.0, 10.0, 370.0, 30.0]], [3], [0.5 + t / 8]
            maps, dist = [[[1.0, 1 / 16], [0.5, 0.0]]], [1.5 + t]
            if t % 2:
                boxes.append([0.0, 0.0, 36.0, 18.0])
                labels.append(0 if self.bad_label else 13)
                scores.append(1 / 16)
                maps.append([[0.25, 0.5], [0.0, 0.125]])
                dist.append(1.0)
            out.append({"boxes": torch.tensor(boxes), "labels": torch.tensor(labels), "scores": torch.tensor(scores),
                        "energy": torch.tensor(maps) * self.gain, "distances": torch.tensor(dist)})
        return out


class ConstantAccdoa(nn.Module):
    """Returns its ``value`` [frames, tracks, 13, k] for every chunk (or the flat baseline layout)."""

    def __init__(self, frames: int = 3, tracks: int = 3, k: int = 4, flat: bool = False):
        super().__init__()
        self.value = nn.Parameter(torch.zeros(frames, tracks, N_CLASSES, k))
        self.flat = flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.value
        if self.flat:
            v = v.transpose(2, 3).reshape(v.shape[0], -1)  # track, axis, class
        return v.expand(x.shape[0], *v.shape)


class CanvasInstance(nn.Module):
    """One detection per frame whose map covers the whole 8 x 4 model canvas: one hot pixel (row 1, col 6)."""

    def __init__(self):
        super().__init__()
        self.level = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor):
        energy = torch.zeros(1, 1, 4, 8)
        energy[0, 0, 1, 6] = 1.0
        return [{"boxes": torch.tensor([[5.0, 0.0, 8.0, 3.0]]), "labels": torch.tensor([1]),
                 "scores": torch.tensor([0.5]), "masks": energy * self.level} for _ in range(len(x))]
