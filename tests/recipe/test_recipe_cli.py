"""The run, recipes, portfolio and package commands through calib's own entry point."""
from __future__ import annotations

import json

import pytest

from calib.cli.main import main
from calib.recipe import dump_recipe
from tests.recipe.toys import recipe_dict, toy_stages, write_data


@pytest.fixture()
def setup(tmp_path):
    with toy_stages():
        data = write_data(tmp_path / "data")
        d = recipe_dict()
        d["stages"] = [s for s in d["stages"] if s["type"] != "t_bias"]  # no learning: scored by the toy path only
        dump_recipe(d, data / "recipe.toml")
        yield data


def test_run_with_set_and_cache_report(setup, tmp_path, capsys, monkeypatch):
    import calib.recipe.runner as runner
    from tests.recipe.toys import toy_scorer

    monkeypatch.setattr(runner, "_default_scorer", lambda: toy_scorer)
    out = tmp_path / "run"
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out)]) == 0
    assert "[3/3] emit (t_round): 0." in capsys.readouterr().out
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out), "--set", "stages.t_scale.factor=2.0"]) == 0
    printed = capsys.readouterr().out
    assert "[1/3] t_add (t_add): cached" in printed and "[2/3] t_scale (t_scale): cached" not in printed
    assert json.loads((out / "run.json").read_text())["stages"][1]["params"] == {"factor": 2.0}
    assert (out / "recipe.toml").read_text().count("factor = 2.0") == 1


def test_errors_exit_2_with_the_key_named(setup, tmp_path, capsys):
    assert main(["run", str(setup / "recipe.toml"), "--out", str(tmp_path / "o"), "--set", "stages.t_add.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "calib run: error:" in err and "stages[0].nope: unknown parameter of stage 't_add'" in err
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "not a shipped recipe" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_coco_with_thresholds_stops_at_load_before_any_stage(setup, tmp_path, capsys):
    """Thresholds the coco protocol cannot use fail when the recipe is read, naming the key, not
    after the stages ran: nothing is written, no stage is printed as run."""
    out = tmp_path / "o"
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out), "--set", "scoring.iou_thresholds=0.5:0.05:0.95",
                 "--set", "scoring.protocol=dcase2026-coco"]) == 2
    captured = capsys.readouterr()
    assert "scoring.iou_thresholds: the dcase2026-coco protocol uses pycocotools' fixed IoU thresholds" in captured.err
    assert "[1/3]" not in captured.out and not out.exists()
    assert main(["run", str(setup / "recipe.toml"), "--out", str(out), "--set", "scoring.iou_thresholds=0.5:0:0.9"]) == 2
    assert "scoring.iou_thresholds: IoU thresholds '0.5:0:0.9': need step > 0" in capsys.readouterr().err


def test_recipes_check_copy_show(setup, tmp_path, capsys):
    assert main(["recipes", "check", str(setup / "recipe.toml")]) == 0
    assert "ok (toy: t_add -> t_scale -> emit t_round)" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text((setup / "recipe.toml").read_text().replace("factor = 0.5", "factor = 0.5\nalpha_x = 1"))
    assert main(["recipes", "check", str(bad)]) == 1
    assert "stages[1].alpha_x: unknown parameter" in capsys.readouterr().err
    copy = tmp_path / "copy.yaml"
    assert main(["recipes", "copy", str(setup / "recipe.toml"), str(copy)]) == 0
    assert main(["recipes", "check", str(copy)]) == 0
    assert main(["recipes", "copy", str(setup / "recipe.toml"), str(copy)]) == 2  # no overwrite
    capsys.readouterr()
    assert main(["recipes", "show", str(setup / "recipe.toml")]) == 0
    assert capsys.readouterr().out == (setup / "recipe.toml").read_text()


def test_recipes_list_names_the_shipped_ones(capsys):
    assert main(["recipes"]) == 0
    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["av-ensemble", "decision-calibrated", "dense-16band", "enhanced-baseline", "prior-fusion"]
    assert main(["recipes", "show", "dense-16band"]) == 0
    assert 'type = "rowmajor"' in capsys.readouterr().out
