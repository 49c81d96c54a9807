"""The one plug-in registry (calib.registry) that stages, features and adapters share: built-ins
found lazily, installed entry points of each kind's group, clear errors for unknown, clashing and
broken names. Installed packages are simulated by a dist-info folder on sys.path, as an installer
leaves it."""
from __future__ import annotations

import sys
import textwrap

import pytest

from calib.registry import BUILTIN, Registry
from calib.stages import base


def fake_install(site, dist, group, entry_points):
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


class Thing:
    pass


def test_targets_are_imported_only_when_asked_for(tmp_path, monkeypatch):
    (tmp_path / "reg_lazy_mod.py").write_text("import sys\nsys.modules[__name__].loaded = True\nclass A: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget", "calib.test-widgets", targets={"a": "reg_lazy_mod:A", "gone": "reg_no_such_mod:B"})
    assert reg.names() == ["a", "gone"] and "reg_lazy_mod" not in sys.modules
    assert [(s.name, s.source) for s in reg.specs()] == [("a", BUILTIN), ("gone", BUILTIN)]
    assert reg.get("a").__name__ == "A" and "reg_lazy_mod" in sys.modules
    with pytest.raises(LookupError, match=r"widget 'gone' \(reg_no_such_mod:B, from calib \(built-in\)\) cannot be "
                                          r"imported"):
        reg.get("gone")
    with pytest.raises(LookupError, match=r"unknown widget 'nope'; known: a, gone \(packages add widgets through "
                                          r"the 'calib.test-widgets' entry-point group\)"):
        reg.get("nope")
    monkeypatch.delitem(sys.modules, "reg_lazy_mod")


def test_registering_twice_is_a_clash_unless_it_is_the_same_definition():
    reg = Registry("widget", "calib.test-widgets", clash=ValueError)
    reg.add("t", Thing)
    reg.add("t", Thing)  # the same class again (a module imported twice): fine
    with pytest.raises(ValueError, match="widget name 't' is already registered by"):
        reg.add("t", type("Thing", (), {"__module__": "elsewhere"}))
    reg.remove("t")
    assert reg.registered() == {}


def test_entry_points_add_stages_by_class_or_by_module(tmp_path, monkeypatch):
    (tmp_path / "plugstage_cls_test.py").write_text(textwrap.dedent('''
        from calib.stages.base import Param, Stage, declare
        class Halve(Stage):
            """Halve every score (a plug-in stage)."""
            PARAMS = declare(by=Param(float, 2.0, "the divisor of every score", gt=0))
            def apply(self, tables):
                import polars as pl
                return tables.replace(detections=tables["detections"].with_columns(pl.col("score") / self.by))
        '''))
    (tmp_path / "plugstage_mod_test.py").write_text(textwrap.dedent('''
        from calib.stages.base import Stage, register
        @register("plug_noop")
        class Noop(Stage):
            """Pass the tables through unchanged (a plug-in stage)."""
            def apply(self, tables):
                return tables
        '''))
    fake_install(tmp_path, "plugstages-test", "calib.stages",
                 {"plug-halve": "plugstage_cls_test:Halve", "plug-more": "plugstage_mod_test",
                  "plug-broken": "plugstage_missing_test"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base.STAGES, "broken", {})
    try:
        from calib.recipe.schema import Recipe, RecipeError

        names = base.STAGES.names()
        assert {"plug-halve", "plug_noop", "cap"} <= set(names)
        halve = base.get_stage("plug-halve")
        assert halve.name == "plug-halve" and halve(by=4.0).get_params() == {"by": 4.0}
        assert base.get_stage("plug_noop").__name__ == "Noop"
        assert "plug-halve" in base.registry()
        doc = {"name": "r", "inputs": {"systems": {"a": "a"}}, "stages": [{"type": "plug-halve", "by": 0}]}
        with pytest.raises(RecipeError, match=r"stages\[0\].by: must be a number > 0, got 0"):
            Recipe.from_dict(doc)
        with pytest.raises(base.UnknownStageError, match="entry point 'plug-broken' .*failed to import"):
            base.get_stage("nope")
    finally:
        for name in ("plug-halve", "plug_noop"):
            base.unregister(name)
        for mod in ("plugstage_cls_test", "plugstage_mod_test"):
            sys.modules.pop(mod, None)


def test_an_entry_point_that_is_not_a_declared_stage_is_refused(tmp_path, monkeypatch):
    (tmp_path / "plugstage_bad_test.py").write_text(textwrap.dedent('''
        from calib.stages.base import Stage
        class NotAStage:
            pass
        class Undeclared(Stage):
            """Takes k without declaring it."""
            def __init__(self, *, k=1):
                self.k = k
        '''))
    fake_install(tmp_path, "plugbad-test", "calib.stages",
                 {"plug-notastage": "plugstage_bad_test:NotAStage", "plug-undeclared": "plugstage_bad_test:Undeclared"})
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(base.UnknownStageError, match="is not a calib Stage class"):
            base.get_stage("plug-notastage")
        with pytest.raises(TypeError, match=r"__init__ takes \['k'\] but PARAMS declares \[\]"):
            base.get_stage("plug-undeclared")
    finally:
        sys.modules.pop("plugstage_bad_test", None)


def test_a_broken_entry_point_is_left_out_of_the_list_and_named(tmp_path, monkeypatch):
    fake_install(tmp_path, "plugbroken-test", "calib.stages", {"plug-gone": "plugstage_gone_test:Gone"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base.STAGES, "broken", {})
    assert "plug-gone" not in base.registry() and "cap" in base.registry()
    assert "plugstage_gone_test" in base.STAGES.broken["plug-gone"]
    with pytest.raises(base.UnknownStageError, match=r"stage 'plug-gone' \(plugstage_gone_test:Gone, from "
                                                     r"plugbroken-test 1.0\) cannot be imported"):
        base.get_stage("plug-gone")
