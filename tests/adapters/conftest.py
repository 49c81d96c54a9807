"""Shared fixtures of the adapter tests: audio files, the example plug-in package installed for real."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(HERE) not in sys.path:  # tiny_adapter_models, referenced by import path in model configs
    sys.path.insert(0, str(HERE))

try:  # tiny models on a shared 2-core machine: intra-op threads only add contention
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass


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


@pytest.fixture(scope="session")
def example_pkg_path(tmp_path_factory) -> Path:
    """tests/adapters/example_pkg installed with pip into a fresh target folder (a real install: dist-info
    with its entry_points.txt). Put the returned folder on sys.path / PYTHONPATH to use it."""
    work = tmp_path_factory.mktemp("example_pkg")
    src = work / "src"
    shutil.copytree(HERE / "example_pkg", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "bdist_wheel" in proc.stdout + proc.stderr:
        # This environment's setuptools cannot build wheels (no 'wheel' package): lay the package out as
        # an installer would -- code plus a dist-info with the entry points from its pyproject.toml.
        shutil.rmtree(target, ignore_errors=True)
        _metadata_install(src, target)
    elif proc.returncode != 0:
        pytest.fail(f"pip install of the example adapter package failed:\n{proc.stdout}\n{proc.stderr}")
    assert any(target.glob("calib_example_adapter-0.1.0.dist-info/entry_points.txt"))
    return target


def _metadata_install(src: Path, target: Path) -> None:
    import tomllib

    project = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    info = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
             for group, eps in project["entry-points"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines))
    shutil.copytree(src / "calib_example_adapter", target / "calib_example_adapter")


def calib_subprocess(args: list[str], extra_path: list[Path] = (), cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), str(ROOT), str(HERE)])
    return subprocess.run([sys.executable, "-m", "calib", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=300)
