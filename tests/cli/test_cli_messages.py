"""What the CLI says when something is missing or long: the extra to install instead of a
traceback, and stage summaries that end where their sentence ends."""
from __future__ import annotations

import json
import sys

import pytest

from calib.cli.main import main
from calib.stages.base import Stage, describe, registry, summary


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from fixtures.synth import generate

    out = tmp_path_factory.mktemp("msg") / "data"
    generate(out, seed=0, clips=2, frames=10, systems=["grid"], blob_scale=0.5)
    return out


@pytest.mark.parametrize("hidden", ["distributed", "dask"])
def test_dask_backend_without_the_extra_says_what_to_install(data, monkeypatch, capsys, hidden):
    monkeypatch.setitem(sys.modules, hidden, None)  # as if calib[dask] were not installed: importing it fails
    rc = main(["score", str(data / "systems" / "grid"), str(data / "gt"), "--backend", "dask", "--jobs", "2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("calib score: error: a Dask cluster (--backend dask) needs Dask")
    assert "pip install 'calib[dask]'" in err and "Traceback" not in err


def test_a_missing_module_that_no_extra_provides_still_raises(monkeypatch, tmp_path):
    import calib.cli.stages as stages_cli

    def broken(args):
        import calib_no_such_module  # noqa: F401

    monkeypatch.setattr(stages_cli, "run", broken)
    with pytest.raises(ModuleNotFoundError, match="calib_no_such_module"):
        main(["stages"])


class LongSummary(Stage):
    """Do a thing across two source lines: the first sentence goes on
    past the first line break.

    Details that a listing leaves out."""


def test_summary_is_the_whole_first_paragraph_on_one_line():
    assert summary(LongSummary) == ("Do a thing across two source lines: the first sentence goes on past the "
                                    "first line break.")
    assert describe(LongSummary).splitlines()[0].endswith("past the first line break.")


def test_every_stage_listed_by_calib_stages_ends_its_summary_at_a_sentence_end(capsys):
    assert main(["stages"]) == 0
    stages_part = capsys.readouterr().out.split("\n\n")[0]  # the gate keys follow after a blank line
    lines = [ln for ln in stages_part.splitlines() if not ln.startswith("    ")]
    assert len(lines) == len(registry())
    cut = [ln for ln in lines if not ln.rstrip().endswith((".", "!", "?"))]
    assert cut == []
    assert ("checkpoint_cluster: Fuse directions from many checkpoints: cluster by great-circle proximity, keep "
            "clusters that enough checkpoints support, emit one direction per cluster.") in lines
    assert main(["stages", "--json", "checkpoint_cluster"]) == 0
    info = json.loads(capsys.readouterr().out)[0]
    assert info["summary"] == lines[[ln.split(":")[0] for ln in lines].index("checkpoint_cluster")].split(": ", 1)[1]


def test_every_command_module_is_a_command_and_none_is_dropped(monkeypatch):
    """calib/cli holds exactly the commands main lists; a command module that cannot be imported
    makes 'calib' fail loudly instead of vanishing from --help."""
    from pathlib import Path

    import calib.cli
    from calib.cli import main as main_module

    modules = {p.stem for p in Path(calib.cli.__file__).parent.glob("*.py")} - {"__init__", "main"}
    assert modules == set(main_module.COMMANDS)
    parser = main_module.build_parser()
    shown = parser._subparsers._group_actions[0].choices
    assert {c.replace("_", "-") for c in main_module.COMMANDS} == set(shown)
    monkeypatch.setitem(sys.modules, "calib.cli.stages", None)  # as if the module could not be imported
    with pytest.raises(ImportError):
        main_module.build_parser()


@pytest.mark.parametrize("command", ["run", "portfolio"])
def test_every_heavy_command_says_what_to_install_for_dask(data, monkeypatch, capsys, tmp_path, command):
    """Checked before any work: the small jobs that would run in-process do not hide it."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    (tmp_path / "grid.toml").write_text('base = "decision-calibrated"\n[axes]\n"stages.cap.per_class" = [1, 3]\n')
    first = ["run", "decision-calibrated"] if command == "run" else ["portfolio", str(tmp_path / "grid.toml")]
    rc = main([*first, "--data", str(data), "--out", str(tmp_path / "out"), "--backend", "dask"])
    err = capsys.readouterr().err
    assert rc == 2 and f"calib {command}: error: a Dask cluster (--backend dask) needs Dask" in err
    assert not (tmp_path / "out").exists()


def test_quiet_changes_nothing_on_stdout(data, capsys):
    args = ["score", str(data / "systems" / "grid"), str(data / "gt")]
    assert main(args) == 0
    loud = capsys.readouterr()
    assert main([*args, "--quiet", "--jobs", "2"]) == 0
    quiet = capsys.readouterr()
    assert quiet.out == loud.out and quiet.err == loud.err == ""
