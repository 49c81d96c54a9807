"""Throughput of the built-in adapters: label frames per second, end to end (audio read, features,
model, rows, points), on random-weight models of realistic size.

    PYTHONPATH=. python tests/benchmarks/bench_adapters.py [--device cpu|cuda] [--seconds 20] [--clips 2]

Models (random weights, built here):
- energy-instance: a 4-block CNN over 1-s log-mel + IV windows -> 10 detections per frame with
  28 x 28 maps (dense points) and distances; energy-instance-overhead: the same outputs from a
  module that computes nothing, i.e. the adapter's own cost (features, rows, points);
- accdoa: a CRNN in the DCASE-baseline mould (3 conv blocks of 64, 2-layer bi-GRU 128, 156 outputs)
  over 5-s chunks, plain and with 8-view ACS;
- audio-prior: ViT-B (768 wide, 12 blocks, 12 heads) + MLP head on 2-s windows, the fbank padded to
  208 frames (104 patches); ``--prior-frames 1024`` pads to AudioMAE's pretraining length instead.
Needs torch and soundfile; prints one line per adapter.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ALLOW = ["bench_adapter_models"]  # the model configs name its factories: --allow-import bench_adapter_models


def build_models(torch, nn):
    class BenchInstance(nn.Module):
        def __init__(self, per_frame: int = 10):
            super().__init__()
            self.k = per_frame
            chans = [7, 32, 64, 128, 128]
            layers = []
            for a, b in zip(chans[:-1], chans[1:]):
                layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2)]
            self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.box = nn.Linear(128, 4 * per_frame)
            self.cls = nn.Linear(128, 13 * per_frame)
            self.maps = nn.Linear(128, 28 * 28 * per_frame)
            self.dist = nn.Linear(128, per_frame)

        def forward(self, x):
            b, k = x.shape[0], self.k
            h = self.body(x)
            raw = torch.sigmoid(self.box(h)).reshape(b, k, 4)
            x1, y1 = raw[..., 0] * 360 - 20, raw[..., 1] * 150
            boxes = torch.stack([x1, y1, x1 + 10 + raw[..., 2] * 60, y1 + 5 + raw[..., 3] * 30], -1)
            scores, labels = torch.softmax(self.cls(h).reshape(b, k, 13), -1).max(-1)
            maps = torch.sigmoid(self.maps(h)).reshape(b, k, 1, 28, 28)
            dist = torch.nn.functional.softplus(self.dist(h))
            return [{"boxes": boxes[i], "labels": labels[i] + 1, "scores": scores[i], "masks": maps[i],
                     "distances": dist[i]} for i in range(b)]

    class BenchCrnn(nn.Module):
        def __init__(self, in_channels: int = 7, frames: int = 50):
            super().__init__()
            self.frames = frames
            blocks, chans = [], [in_channels, 64, 64, 64]
            pools = [(5, 4), (1, 4), (1, 2)]
            for (a, b), p in zip(zip(chans[:-1], chans[1:]), pools):
                blocks += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(p)]
            self.conv = nn.Sequential(*blocks)
            self.gru = nn.GRU(64 * 2, 128, num_layers=2, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(256, 3 * 4 * 13)

        def forward(self, x):  # [B, 7, 250, 64]
            h = self.conv(x)  # [B, 64, 50, 2]
            h = h.permute(0, 2, 1, 3).flatten(2)
            h, _ = self.gru(h)
            return torch.tanh(self.fc(h))  # flat baseline layout [B, 50, 156]

    class ConstantInstance(nn.Module):
        """10 fixed detections per frame with 28 x 28 maps: no model compute, so only the adapter's own cost."""

        def __init__(self, per_frame: int = 10):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.boxes = nn.Parameter(torch.rand(per_frame, 4, generator=g) * torch.tensor([300.0, 120, 60, 60])
                                      + torch.tensor([0.0, 0, 300, 120]))
            self.maps = nn.Parameter(torch.rand(per_frame, 1, 28, 28, generator=g))
            self.labels = nn.Parameter(torch.arange(per_frame, dtype=torch.float32) % 13 + 1)

        def forward(self, x):
            scores = torch.linspace(0.9, 0.1, len(self.labels))
            return [{"boxes": self.boxes, "labels": self.labels.long(), "scores": scores, "masks": self.maps}
                    for _ in range(x.shape[0])]

    return BenchInstance, BenchCrnn, ConstantInstance


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds per synthetic clip")
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--prior-frames", type=int, default=208, help="fbank frames the ViT sees (208 or 1024)")
    ap.add_argument("--only", nargs="*", help="runs to do (energy-instance energy-instance-overhead accdoa accdoa-acs "
                    "audio-prior)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    args = ap.parse_args(argv)

    import soundfile as sf
    import torch
    from torch import nn

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from calib.adapters import adapt
    from calib.adapters.vit import AudioPriorNet

    if args.threads:
        torch.set_num_threads(args.threads)
    BenchInstance, BenchCrnn, ConstantInstance = build_models(torch, nn)
    tmp = Path(tempfile.mkdtemp(prefix="bench_adapters_"))
    audio = tmp / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(args.clips):
        sf.write(str(audio / f"clip{i}.wav"), (rng.standard_normal((int(args.seconds * 24000), 4)) * 0.1).astype(np.float32),
                 24000, subtype="FLOAT")
    frames = args.clips * int(np.ceil(args.seconds * 10))
    warm = tmp / "warm.wav"
    sf.write(str(warm), (rng.standard_normal((5 * 24000, 4)) * 0.1).astype(np.float32), 24000, subtype="FLOAT")

    # Model factories must be importable by path: expose them through a throwaway module.
    import types

    mod = types.ModuleType("bench_adapter_models")
    mod.BenchInstance, mod.BenchCrnn, mod.ConstantInstance = BenchInstance, BenchCrnn, ConstantInstance
    sys.modules["bench_adapter_models"] = mod
    torch.manual_seed(0)
    torch.save(BenchInstance().state_dict(), tmp / "inst.pt")
    torch.save(BenchCrnn().state_dict(), tmp / "crnn.pt")
    torch.save(ConstantInstance().state_dict(), tmp / "const.pt")
    vit = {"img_size": [args.prior_frames, 128], "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12,
           "head_hidden": [256]}
    torch.save(AudioPriorNet(**vit).state_dict(), tmp / "vit.pt")

    runs = {
        "energy-instance": ("energy-instance", tmp / "inst.pt", {
            "allow_import": ALLOW, "model_config": {"architecture": "bench_adapter_models:BenchInstance"},
            "window_frames": 10}),
        "energy-instance-overhead": ("energy-instance", tmp / "const.pt", {
            "allow_import": ALLOW, "model_config": {"architecture": "bench_adapter_models:ConstantInstance"},
            "window_frames": 10}),
        "accdoa": ("accdoa", tmp / "crnn.pt", {"allow_import": ALLOW,
                                               "model_config": {"architecture": "bench_adapter_models:BenchCrnn"}}),
        "accdoa-acs": ("accdoa", tmp / "crnn.pt", {"allow_import": ALLOW,
                                                   "model_config": {"architecture": "bench_adapter_models:BenchCrnn"},
                                                   "acs": True}),
        "audio-prior": ("audio-prior", tmp / "vit.pt", {"model_config": {"architecture": "audiomae-vit-prior",
                                                                         "params": vit}}),
    }
    print(f"# device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"clips={args.clips}x{args.seconds}s ({frames} label frames) batch={args.batch_size} "
          f"loadavg={os.getloadavg()[0]:.1f}")
    for label, (name, ckpt, params) in runs.items():
        if args.only and label not in args.only:
            continue
        params = {**params, "precision": "auto"}
        # warm-up on a 5-s clip (allocator, kernels, scipy imports), then time every clip
        adapt(name, ckpt, [warm], device=args.device, batch_size=args.batch_size, params=params)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = adapt(name, ckpt, [audio], device=args.device, batch_size=args.batch_size, params=params)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        extra = f" img_size={args.prior_frames}x128" if name == "audio-prior" else ""
        print(json.dumps({"adapter": label, "frames": frames, "seconds": round(dt, 3),
                          "frames_per_s": round(frames / dt, 1), "rows": len(res.table)}) + extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
