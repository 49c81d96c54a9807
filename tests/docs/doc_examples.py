"""The documentation's examples as data, and a way to run them as a user would.

- :func:`readme_examples`: every ``calib ...`` command of README.md's shell code blocks (a line may
  chain commands with ``&&``; ``.venv/bin/calib`` counts as ``calib``), in page order.
- :func:`readme_files`: the files README.md shows, a code block whose first line is ``# NAME``.
- :func:`help_examples`: every line of ``calib --help`` and of each command's ``--help`` (sub-commands
  included) that starts with ``calib``: the epilogs' examples.
- :func:`run_example`: ``python -m calib ARGS`` in a folder, as a shell would run the line (a
  trailing ``> FILE`` writes stdout to FILE). A subprocess per command, so no example leaves state
  behind (imported feature modules, joblib workers started in another folder).

The commands table's inline spans (``calib score PRED GT ...``) are synopses, not examples.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SHELL_LANGS = ("bash", "sh", "shell", "console")
DEMO_BEGIN = "<!-- demo-block: begin (written by tests/docs/demo_readme.py; do not edit by hand) -->"
DEMO_END = "<!-- demo-block: end -->"


@dataclass
class Example:
    source: str  # where it is written: "README.md:76", "calib run --help"
    text: str  # the command as written, comment removed
    argv: list[str] = field(default_factory=list)  # the arguments after "calib"
    stdout_to: str | None = None  # "> FILE"

    def __str__(self) -> str:
        return f"{self.source}: {self.text}"


def _commands(line: str, source: str) -> list[Example]:
    """The calib commands of one logical shell line."""
    out = []
    for segment in line.split("&&"):
        words = shlex.split(segment, comments=True)
        if not words or not (words[0] == "calib" or words[0].endswith("/calib")):
            continue
        argv, stdout_to = words[1:], None
        if ">" in argv:
            i = argv.index(">")
            argv, stdout_to = argv[:i], argv[i + 1]
        text = " ".join(["calib", *(shlex.quote(a) for a in argv)] + ([">", stdout_to] if stdout_to else []))
        out.append(Example(source, text, argv, stdout_to))
    return out


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Join lines ending in a backslash with the next one; (number of the first line, text)."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for no, text in lines:
        if pending is not None:
            no, text = pending[0], pending[1] + " " + text.strip()
        if text.rstrip().endswith("\\"):
            pending = (no, text.rstrip()[:-1])
            continue
        pending = None
        out.append((no, text))
    return out


def code_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, line number of the first body line, body lines) of each fenced block."""
    blocks, lang, start, body = [], None, 0, []
    for no, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            if lang is None:
                lang, start, body = line[3:].strip(), no + 1, []
            else:
                blocks.append((lang, start, body))
                lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def readme_examples(text: str | None = None) -> list[Example]:
    text = README.read_text() if text is None else text
    out = []
    for lang, start, body in code_blocks(text):
        if lang not in SHELL_LANGS:
            continue
        for no, line in _logical_lines(list(enumerate(body, start=start))):
            out.extend(_commands(line, f"README.md:{no}"))
    return out


def readme_files(text: str | None = None) -> dict[str, str]:
    """File name -> content of each code block that starts with a ``# NAME`` line naming a file."""
    text = README.read_text() if text is None else text
    files = {}
    for _, _, body in code_blocks(text):
        if body and re.fullmatch(r"# [\w.-]+\.(toml|yaml|json|csv)", body[0].strip()):
            files[body[0].strip()[2:]] = "\n".join(body[1:]) + "\n"
    return files


def help_texts() -> dict[str, str]:
    """``calib`` and every (sub-)command -> its --help text, in the order calib --help lists them."""
    import argparse

    from calib.cli.main import build_parser

    texts: dict[str, str] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        texts[name] = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")

    walk(build_parser(), "calib")
    return texts


def help_examples() -> list[Example]:
    out = []
    for name, text in help_texts().items():
        lines = [(no, line) for no, line in enumerate(text.splitlines(), start=1)]
        for _, line in _logical_lines(lines):
            if line.lstrip().startswith("calib ") and line.startswith(" "):
                out.extend(_commands(line, f"{name} --help"))
    return out


def help_block(command: str, heading: str) -> str:
    """The indented lines after the line starting with ``heading`` in ``command``'s --help, dedented."""
    lines = help_texts()[command].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) + 1
    body = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        body.append(line[2:])
    return "\n".join(body) + "\n"


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run_example(argv: list[str], cwd: Path, stdout_to: str | None = None, timeout: int = 600) -> Result:
    proc = subprocess.run([sys.executable, "-m", "calib", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if stdout_to:
        (cwd / stdout_to).write_text(proc.stdout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def demo_table_in_readme(text: str | None = None) -> str:
    """The table of README.md's demo block (the code block between the markers)."""
    text = README.read_text() if text is None else text
    block = text.split(DEMO_BEGIN, 1)[1].split(DEMO_END, 1)[0]
    return block.split("```\n", 1)[1].split("\n```", 1)[0] + "\n"


def run_in_order(examples: list[Example], ws: Path, demo: Callable[[], Result]) -> list[str]:
    """Run ``examples`` in order in the folder ``ws``, as a user would type them, making the inputs
    an example takes for granted (:mod:`example_inputs`) just before it. An example written twice
    runs once; ``calib demo demo-out`` is ``demo()``, the session's one demo run. Fails at the first example
    that exits non-zero, naming it. Returns what was run differently, with why."""
    from example_inputs import provide, substitute

    notes, done = [], set()
    for ex in examples:
        if ex.text in done:
            continue
        done.add(ex.text)
        if ex.argv == ["demo", "demo-out"]:
            res = demo()
        else:
            argv, why = substitute(ex.text, ex.argv)
            if why:
                notes.append(f"{ex}: ran {' '.join(['calib', *argv])} ({why})")
            provide(argv, ws)
            res = run_example(argv, ws, ex.stdout_to)
        assert res.rc == 0, f"{ex}\nexited {res.rc}\n--- stderr ---\n{res.err[-3000:]}\n--- stdout ---\n{res.out[-2000:]}"
    return notes
