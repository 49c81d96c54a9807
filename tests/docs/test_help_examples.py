"""Every example of ``calib --help`` and of each command's ``--help`` runs, in the order calib --help
lists the commands, in one folder (``calib --help``'s typical flow first writes the synthetic
data/ the others use). Where an example cannot run here as written, tests/docs/example_inputs.py
says what runs instead and why (a 4.8 GB data set, a Dask scheduler at a made-up address, a CUDA
device). The recipe addresses the help texts and docstrings show exist."""
from __future__ import annotations

import re
import textwrap
import tomllib

import pytest

from doc_examples import help_block, help_examples, help_texts, run_in_order


def test_examples_are_found_in_every_commands_help():
    # a guard on the extraction: were it to find nothing, the test below would pass on nothing
    assert {e.argv[0] for e in help_examples()} >= {
        "synth", "ingest", "export", "score", "rerank", "stages", "recipes", "run", "emit-ablation",
        "portfolio", "package", "adapt", "demo"}
    assert len(help_examples()) >= 50


@pytest.mark.slow
def test_every_help_example_runs(tmp_path, request):
    pytest.importorskip("torch", reason="calib adapt's examples need the torch extra")
    pytest.importorskip("soundfile", reason="calib adapt's examples need the torch extra")
    notes = run_in_order(help_examples(), tmp_path, lambda: request.getfixturevalue("demo_run")[1])
    ran_otherwise = sorted(n.split(": calib ", 1)[0] for n in notes)
    assert ran_otherwise == sorted(["calib synth --help", "calib score --help"]
                                   + (["calib adapt --help"] if any("CUDA" in n for n in notes) else [])), notes


def _decision_calibrated_with(assignments: list[str]):
    from calib.cli.run import load_with_overrides

    return load_with_overrides("decision-calibrated", assignments)[0]


def test_set_addresses_in_the_help_texts_apply_to_decision_calibrated():
    texts = help_texts()
    shown = re.findall(r"\b((?:stages|emit|splits)\.[\w.\[\]]+=[^\s,;)]+)", texts["calib run"])
    assert "stages.cap.per_class=3" in shown and "stages.rerank.enabled=false" in shown
    for assignment in shown:
        _decision_calibrated_with([assignment])  # raises on an unknown stage, parameter or type
    axes = re.findall(r'"((?:stages|emit)\.[\w.]+)" = (\[[^\]]*\])', texts["calib portfolio"])
    assert ("stages.cap.per_class", "[1, 3]") in axes
    for address, values in axes:
        for v in tomllib.loads(f"v = {values}")["v"]:
            _decision_calibrated_with([f"{address}={str(v).lower() if isinstance(v, bool) else v}"])


def test_portfolio_help_grid_example_expands_over_its_base():
    from calib.portfolio.grid import Grid, expand
    from calib.recipe import shipped_recipes
    from calib.recipe.io import read_document

    grid = Grid.from_dict(tomllib.loads(help_block("calib portfolio", "grid file example")))
    variants = expand(grid, read_document(shipped_recipes()[grid.base]))
    assert [v.label for v in variants] == ["rerank.enabled=on", "rerank.enabled=off"]


def test_recipe_and_grid_docstrings_show_valid_files():
    import calib.portfolio.grid as grid_module
    import calib.recipe.address as address_module
    import calib.recipe.schema as schema
    from calib.portfolio.grid import Grid, expand
    from calib.recipe import Recipe, shipped_recipes
    from calib.recipe.io import read_document

    recipe_toml = textwrap.dedent(schema.__doc__.split("In TOML::\n", 1)[1].split("\nEach section")[0])
    recipe = Recipe.from_dict(tomllib.loads(recipe_toml))  # every type, parameter and input checked
    assert [s.address for s in recipe.stages] == ["threshold", "rerank", "cap", "frame_cap", "gaussian", "max_envelope"]
    assert recipe.stages[-1].gate == "per_class"
    grid_toml = textwrap.dedent(grid_module.__doc__.split("\n\n", 1)[1])
    grid = Grid.from_dict(tomllib.loads(grid_toml))
    assert len(expand(grid, read_document(shipped_recipes()["decision-calibrated"]))) == 4
    shown = re.findall(r"^    ((?:stages|emit)\S+)", address_module.__doc__, re.M)
    assert shown == ["stages.rerank.enabled", "stages.cap.per_class", "stages[0].threshold", "emit.n"]
    for address in shown:
        value = "false" if address.endswith("enabled") else "3"
        _decision_calibrated_with([f"{address}={value}"])
