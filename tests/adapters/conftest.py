"""Fixtures of the adapter tests: the example plug-in package installed for real; torch kept to one thread."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # tiny_adapter_models, referenced by import path in model configs
    sys.path.insert(0, str(HERE))

try:  # tiny models on a shared 2-core machine: intra-op threads only add contention
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass


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
