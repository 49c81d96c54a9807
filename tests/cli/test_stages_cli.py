"""calib stages: every parameter with its type, default, constraint, unit and meaning; the gate keys."""
from __future__ import annotations

import json

from calib.cli.main import main
from calib.stages.base import registry


def test_a_stage_in_full_lists_each_parameter_on_one_line(capsys):
    assert main(["stages", "grid"]) == 0
    out = capsys.readouterr().out
    assert "      n=3  (int >= 1; points) grid points per side: n x n points per detection\n" in out
    assert "      frac=0.0  (float in [0, 1]; fraction of the peak) tighten the box" in out
    assert main(["stages", "threshold"]) == 0
    assert "      per_class={}  (table[class -> float]; score) per-class thresholds" in capsys.readouterr().out


def test_the_gate_keys_are_listed_and_explained(capsys):
    assert main(["stages"]) == 0
    tail = capsys.readouterr().out.split("\n\n")[-1]
    assert tail == ("gate keys, on any stage entry ('calib stages gate' explains them):\n"
                    "    gate='none', gate_folds=4, gate_seed=0, gate_confidence=0.95\n")
    assert main(["stages", "gate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gate (keys of any stage entry)\n")
    assert "      gate_folds=4  (int >= 3; clip folds) clip folds the gate cross-fits" in out
    assert "      gate_confidence=0.95  (float in [0.5, 1); probability)" in out


def test_json_gives_every_parameter_of_every_stage_then_the_gate_keys(capsys):
    assert main(["stages", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in infos] == [*registry(), "gate"]
    assert [i["kind"] for i in infos] == ["stage"] * len(registry()) + ["gate keys"]
    by_name = {i["name"]: i for i in infos}
    n = by_name["grid"]["parameters"][0]
    assert n == {"name": "n", "type": "int", "default": 3, "required": False, "constraint": ">= 1", "unit": "points",
                 "meaning": "grid points per side: n x n points per detection"}
    steps = {p["name"]: p for p in by_name["size_guard"]["parameters"]}["steps"]
    assert steps["type"] == "list[str]" and steps["constraint"].startswith("items one of 'round', 'drop_low'")
    for info in infos:
        assert [p["name"] for p in info["parameters"]] == list(info["params"])
        assert all(p["meaning"] for p in info["parameters"])
