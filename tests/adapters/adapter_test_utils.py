"""Helpers of the adapter tests (a uniquely named module, so imports never hit another conftest)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def write_audio(path: Path, audio: np.ndarray, sr: int) -> Path:
    """``audio`` [channels, samples] -> a float WAV file."""
    sf = pytest.importorskip("soundfile")
    subtype = "PCM_24" if path.suffix == ".flac" else "FLOAT"
    sf.write(str(path), np.ascontiguousarray(audio.T, dtype=np.float32), sr, subtype=subtype)
    return path


def noise(channels: int, seconds: float, sr: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((channels, int(round(seconds * sr)))) * 0.1).astype(np.float32)


def foa_plane_wave(azimuth_deg: float, elevation_deg: float, seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """FOA (ACN W, Y, Z, X; SN3D) of white noise from one direction: [4, samples]."""
    s = noise(1, seconds, sr, seed)[0]
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    gains = np.array([1.0, np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    return (gains[:, None] * s[None, :]).astype(np.float32)


def calib_subprocess(args: list[str], extra_path: list[Path] = (), cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), str(ROOT), str(HERE)])
    return subprocess.run([sys.executable, "-m", "calib", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=300)
