"""Every ``calib`` command of README.md runs as written, in page order, in one folder: the
walkthrough from the STAIRS26 layout (rehearsed on ``calib synth`` output) through run ->
portfolio -> package first, then every other section's examples. README.md's demo table is what
``calib demo`` prints."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from doc_examples import demo_table_in_readme, readme_examples, readme_files, run_in_order

WALKTHROUGH_LAST = "calib score submission/Doe_ABC_task3a_1 data/eval_gt"


def _split() -> tuple[list, list]:
    """(the walkthrough's commands, every other command) of README.md, in page order."""
    examples = [e for e in readme_examples()]
    end = [e.text for e in examples].index(WALKTHROUGH_LAST) + 1
    first = [e.text for e in examples].index("calib synth data/ --clips 8 --frames 30")
    return examples[first:end], examples[:first] + examples[end:]


@pytest.fixture(scope="module")
def walked(tmp_path_factory, request) -> tuple[Path, list[str]]:
    """A folder holding the files README.md shows (grid.toml), after README.md's walkthrough ran
    in it; and what ran differently from the page."""
    ws = tmp_path_factory.mktemp("readme")
    for name, content in readme_files().items():
        (ws / name).write_text(content)
    return ws, run_in_order(_split()[0], ws, lambda: request.getfixturevalue("demo_run")[1])


def test_readme_shows_a_walkthrough_and_its_grid():
    walk, _ = _split()
    assert [e.argv[0] for e in walk] == ["synth", "score", "run", "run", "portfolio", "package", "package", "score"]
    grid = readme_files()["grid.toml"]
    assert 'base = "decision-calibrated"' in grid and '"stages.rerank.enabled" = [true, false]' in grid


@pytest.mark.slow
def test_readme_walkthrough_runs_as_written_on_synth_output(walked):
    ws, notes = walked
    assert notes == []  # nothing substituted: it runs as written
    # the portfolio ran both settings of the reranker (the rerank-off variants cap by score_raw,
    # which only the reranker creates) and estimated each
    rows = json.loads((ws / "pf" / "estimates.json").read_text())
    assert sorted(r["settings"] for r in rows) == ["rerank.enabled=off", "rerank.enabled=on"]
    assert all(r["oof_mAP"] == r["oof_mAP"] and r["in_sample_mAP"] > 0 for r in rows)
    # the package holds the evaluation clips (no GT under gt/), one folder per chosen system
    manifest = json.loads((ws / "data" / "manifest.json").read_text())
    eval_clips = sorted(c["name"] for c in manifest["eval_clips"])
    assert eval_clips == ["mix001", "mix002"]
    chosen = json.loads((ws / "pf" / "portfolio.json").read_text())["chosen"]
    systems = sorted(p.name for p in (ws / "submission").iterdir() if p.is_dir())
    assert systems == [f"Doe_ABC_task3a_{c['rank']}" for c in chosen] and systems
    for s in systems:
        assert sorted(p.stem for p in (ws / "submission" / s).glob("*.json")) == eval_clips


@pytest.mark.slow
def test_every_other_readme_example_runs(walked, demo_run):
    pytest.importorskip("torch", reason="README's adapter examples need the torch extra")
    pytest.importorskip("soundfile", reason="README's adapter examples need the torch extra")
    ws, _ = walked
    notes = run_in_order(_split()[1], ws, lambda: demo_run[1])
    assert all("no CUDA device" in n for n in notes), notes


@pytest.mark.slow
def test_readme_demo_table_is_what_calib_demo_prints(demo_run):
    cwd, res = demo_run
    assert res.rc == 0, res.err[-3000:]
    printed = (cwd / "demo-out" / "demo_table.txt").read_text()
    assert printed in res.out  # the file holds the table calib demo printed
    assert demo_table_in_readme() == printed, "README.md's demo block is stale: python tests/docs/demo_readme.py"
