"""The import layering check (calib.devtools.layers): the real tree is clean, and on a small
synthetic package it reports exactly the upward import and the cycle planted there."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from calib.devtools import layers

CALIB = Path(layers.__file__).resolve().parents[1]


def test_calib_has_no_upward_import_and_no_cycle():
    assert [str(p) for p in layers.check(CALIB)] == []


def test_command_exits_0_on_calib():
    run = subprocess.run([sys.executable, "-m", "calib.devtools.layers"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("layers ok: ")


def test_every_calib_module_has_a_layer():
    mods = layers.module_files(CALIB, "calib")
    assert [m for m in mods if layers.layer_of(m) is None] == []
    assert layers.layer_of("calib.score.api") == (4, "score")
    assert layers.layer_of("calib.constants") == (0, "core")
    assert layers.layer_of("calib") == (0, "core")
    assert layers.layer_of("calib.stages.emit.guard")[1] == "stages"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, src in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(src))


TOY_LAYERS = (("low", ("pkg", "pkg.low")), ("high", ("pkg.high",)))
TOY = {
    "pkg/__init__.py": "",
    "pkg/low/__init__.py": "",
    "pkg/low/a.py": """\
        import os
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from pkg.high import d  # not an arrow at run time
        def f():
            from pkg.high import e
            return e
        """,
    "pkg/low/z.py": "from . import a\nfrom pkg import low\n",
    "pkg/high/__init__.py": "",
    "pkg/high/b.py": "from pkg.low import a, z  # down: fine\nimport pkg.high.e  # same layer: fine\n",
    "pkg/high/c.py": "X = 1\nfrom . import d\n",
    "pkg/high/d.py": "def g():\n    import pkg.high.c\n",
    "pkg/high/e.py": "",
}


def test_synthetic_package_reports_exactly_the_planted_problems(tmp_path):
    _write(tmp_path, TOY)
    root = tmp_path / "pkg"
    got = layers.check(root, "pkg", TOY_LAYERS, external=())
    assert [(p.kind, str(p)) for p in got] == [
        ("upward", f"{root / 'low' / 'a.py'}:7: upward import: pkg.low.a (low) imports pkg.high.e (high): "
                   "from pkg.high import e"),
        ("cycle", "import cycle: pkg.high.c -> pkg.high.d -> pkg.high.c\n"
                  f"    {root / 'high' / 'c.py'}:2: from . import d\n"
                  f"    {root / 'high' / 'd.py'}:2: import pkg.high.c"),
    ]


def test_synthetic_module_outside_every_layer_is_reported(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/stray.py": ""})
    got = layers.check(tmp_path / "pkg", "pkg", (("low", ("pkg",)), ("high", ("pkg.high",))), external=())
    assert got == []  # "pkg" covers it
    got = layers.check(tmp_path / "pkg", "pkg", (("low", ("pkg.low",)),), external=())
    assert [p.kind for p in got] == ["unplaced", "unplaced"]
    assert "module pkg.stray is in no layer" in str(got[1])


def test_command_exits_1_and_lists_the_problems(tmp_path):
    _write(tmp_path, {"calib/__init__.py": "", "calib/io/__init__.py": "", "calib/io/x.py": "import calib.cli.y\n",
                      "calib/cli/__init__.py": "", "calib/cli/y.py": ""})
    run = subprocess.run([sys.executable, "-m", "calib.devtools.layers", str(tmp_path / "calib")],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "x.py:1: upward import: calib.io.x (data) imports calib.cli.y (cli): import calib.cli.y" in run.stdout
    assert run.stdout.rstrip().endswith("1 upward import(s), 0 import cycle(s), 0 unplaced module(s)")
