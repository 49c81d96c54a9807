"""Submission packages built from a portfolio of test-only stages: layout, meta files, the
official-rules check (passing, and catching each broken rule), deterministic zip."""
from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import yaml

from calib.io.dcase import load_annotations
from calib.io.errors import InputError
from calib.package import build_package, check_package, default_abbreviation, parse_author
from calib.portfolio import load_grid, run_portfolio
from calib.recipe import dump_recipe
from tests.recipe.toys import TRIANGLE, recipe_dict, toy_scorer, toy_stages, write_data

AUTHORS = [parse_author("Doe, Jane, jane@abc.edu, ABC University")]


@pytest.fixture(scope="module")
def portfolio_dir(tmp_path_factory):
    with toy_stages():
        root = tmp_path_factory.mktemp("pkg")
        data = write_data(root / "data")
        # two evaluation clips without GT: e1 with a detection, e2 with none
        (data / "systems" / "sysA" / "e1.json").write_text(json.dumps({"annotations": [
            {"metadata_frame_index": 0, "category_id": 12, "score": 0.5, "segmentation": [TRIANGLE]}]}))
        (data / "systems" / "sysA" / "e2.json").write_text('{"annotations": []}')
        dump_recipe(recipe_dict(), data / "recipe.toml")
        (data / "grid.toml").write_text('base = "recipe.toml"\nfolds = 2\n[axes]\n"stages.t_bias.enabled" = [true, false]\n'
                                        '"stages.t_scale.factor" = [0.5, 1.0]\n')
        grid, base = load_grid(data / "grid.toml")
        run_portfolio(grid, base, root / "pf", base_dir=data, scorer=toy_scorer, log=lambda s: None)
        yield root / "pf"


@pytest.fixture()
def toys():
    with toy_stages() as t:
        yield t


def test_package_layout_meta_and_check(portfolio_dir, tmp_path, toys):
    res = build_package(portfolio_dir, tmp_path / "sub", label="Doe_ABC", track="a", authors=AUTHORS, log=lambda s: None)
    names = [d.name for d in res.systems]
    assert names == ["Doe_ABC_task3a_1", "Doe_ABC_task3a_2", "Doe_ABC_task3a_3", "Doe_ABC_task3a_4"]
    assert res.clips == ["e1", "e2"]  # default: the clips without ground truth
    chosen = json.loads((portfolio_dir / "portfolio.json").read_text())["chosen"]
    for d, entry in zip(res.systems, chosen):
        assert sorted(p.name for p in d.iterdir()) == sorted(["e1.json", "e2.json", f"{d.name}.meta.yaml"])
        assert load_annotations(d / "e2.json") == []
        (e1,) = load_annotations(d / "e1.json")
        assert e1["category_id"] == 12 and e1["segmentation"] == [TRIANGLE]
        meta = yaml.safe_load((d / f"{d.name}.meta.yaml").read_text())
        sub = meta["submission"]
        assert sub["label"] == d.name and sub["abbreviation"] == f"T{entry['rank']}" and sub["authors"] == AUTHORS
        assert sub["name"] == f"toy {entry['variant']} ({entry['label']})"
        summary = meta["system"]["description"]["summary"]
        assert "Pipeline: t_add(delta=0.25) -> " in summary and "emission t_round(digits=3)" in summary
        assert f"Chosen as '{entry['role']}'" in summary
        dev = meta["results"]["development_dataset"]
        assert dev["out_of_fold"]["mAP"] == pytest.approx(entry["out_of_fold"]["mAP"])
        assert dev["protocol"] == "dcase2026" and dev["folds"] == 2
    assert check_package(res.out_dir) == []
    with zipfile.ZipFile(res.zip_path) as zf:
        listed = zf.namelist()
        assert "Doe_ABC_task3a_1/e1.json" in listed and "Doe_ABC_task3a_4/Doe_ABC_task3a_4.meta.yaml" in listed
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        assert zf.read("Doe_ABC_task3a_2/e1.json") == (res.systems[1] / "e1.json").read_bytes()


def test_package_is_deterministic(portfolio_dir, tmp_path, toys):
    a = build_package(portfolio_dir, tmp_path / "a", label="Doe_ABC", track="b", authors=AUTHORS, log=lambda s: None)
    b = build_package(portfolio_dir, tmp_path / "b", label="Doe_ABC", track="b", authors=AUTHORS, log=lambda s: None)
    assert a.zip_path.name == "Doe_ABC_task3b.zip"
    assert a.zip_path.read_bytes() == b.zip_path.read_bytes()


def test_clip_sets(portfolio_dir, tmp_path, toys):
    res = build_package(portfolio_dir, tmp_path / "all", label="Doe_ABC", track="a", authors=AUTHORS, clips="all",
                        make_zip=False, log=lambda s: None)
    assert res.clips == ["e1", "e2", "s1", "s2", "t1", "t2"] and res.zip_path is None
    res = build_package(portfolio_dir, tmp_path / "dev", label="Doe_ABC", track="a", authors=AUTHORS, clips="dev",
                        make_zip=False, log=lambda s: None)
    assert res.clips == ["s1", "s2", "t1", "t2"]
    assert check_package(res.out_dir) == []


@pytest.mark.parametrize("kwargs, msg", [
    ({"label": "Doe"}, "is not Lastname_INST"),
    ({"track": "c"}, "the track is a or b"),
    ({"authors": []}, "at least one author"),
    ({"abbreviations": ["TOOLONGNAME"] * 4}, "abbreviation 'TOOLONGNAME' is longer than 10 characters"),
    ({"names": ["one"]}, "given 1 time(s); the portfolio has 4 system(s)"),
])
def test_bad_requests_write_nothing(portfolio_dir, tmp_path, toys, kwargs, msg):
    args = {"label": "Doe_ABC", "track": "a", "authors": AUTHORS} | kwargs
    with pytest.raises(InputError) as e:
        build_package(portfolio_dir, tmp_path / "out", log=lambda s: None, **args)
    assert msg in str(e.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_check_catches_each_broken_rule(portfolio_dir, tmp_path, toys):
    res = build_package(portfolio_dir, tmp_path / "p", label="Doe_ABC", track="a", authors=AUTHORS, clips="dev",
                        make_zip=False, log=lambda s: None)
    d1, d2, d3, d4 = res.systems
    ann = {"metadata_frame_index": 0, "category_id": 1, "score": 0.5, "segmentation": [TRIANGLE]}
    (d1 / "s1.json").write_text(json.dumps({"annotations": [ann | {"segmentation": [[[400.0, 20.0, 1.0]]]}]}))
    (d2 / "s1.json").write_text(json.dumps({"annotations": [ann, ann | {"category_id": 13}]}))
    (d3 / "s1.json").write_text('{"annotations": [{"metadata_frame_index": 0, "category_id": 1, "score": NaN, '
                                '"segmentation": [[[1.0, 2.0, 1.0]]]}]}')
    (d4 / "s1.json").write_text(json.dumps({"annotations": [ann | {"segmentation": [[[1.0, 2.0]]]}]}))
    (d4 / "t2.json").unlink()
    meta = d4 / f"{d4.name}.meta.yaml"
    m = yaml.safe_load(meta.read_text())
    m["submission"]["abbreviation"] = "ELEVENCHARS"
    meta.write_text(yaml.safe_dump(m))
    problems = check_package(res.out_dir)
    text = "\n".join(problems)
    assert "Doe_ABC_task3a_1/s1.json: annotation 0: polygon 0 has points outside the canvas" in text
    assert "Doe_ABC_task3a_2/s1.json: annotation 1: class id 13 outside 0..12" in text
    assert "Doe_ABC_task3a_3/s1.json: annotation 0: score is" in text and "scores must be finite numbers" in text
    assert "Doe_ABC_task3a_4/s1.json: annotation 0: polygon 0 is not an N x 3 array" in text
    assert "Doe_ABC_task3a_4: clip files differ from the expected set (missing ['t2']" in text
    assert "abbreviation 'ELEVENCHARS' is longer than 10 characters" in text
    assert len(problems) == 6
    # the size rule, with a small limit standing in for 20 MiB
    shutil.rmtree(d1), shutil.rmtree(d2), shutil.rmtree(d3), shutil.rmtree(d4)
    ok = build_package(portfolio_dir, tmp_path / "q", label="Doe_ABC", track="a", authors=AUTHORS, clips="dev",
                       make_zip=False, log=lambda s: None)
    size = (ok.systems[0] / "s1.json").stat().st_size
    over = check_package(ok.out_dir, max_bytes=size - 1)
    assert any(p.startswith("Doe_ABC_task3a_1/s1.json:") and "over the" in p for p in over)


def test_helpers():
    assert default_abbreviation("decision-calibrated", 2) == "DC2"
    assert default_abbreviation("16-band dense extraction", 1) == "1BDE1"
    with pytest.raises(InputError, match="Lastname, Firstname, email"):
        parse_author("Doe Jane")
    assert parse_author("Doe, Jane, j@x.org") == {"lastname": "Doe", "firstname": "Jane", "email": "j@x.org"}


def _tree(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _tampered_copy(portfolio_dir, tmp_path):
    pf = tmp_path / "pf"
    shutil.copytree(portfolio_dir, pf, ignore=shutil.ignore_patterns(".cache"))
    return pf, json.loads((pf / "portfolio.json").read_text())


@pytest.mark.parametrize("bad", ["../../escaped", "/tmp/calib_abs_escaped_test", ".hidden", "sub/clip"])
def test_clip_names_from_metrics_json_never_leave_the_package(portfolio_dir, tmp_path, toys, bad):
    """A clip name read back from a portfolio's metrics.json is checked before anything is written:
    the refused package leaves the directory tree exactly as it was (no file outside --out, no
    staging folder, no parent folder created for it)."""
    pf, portfolio = _tampered_copy(portfolio_dir, tmp_path)
    metrics_path = pf / "variants" / portfolio["chosen"][1]["variant"] / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["all_clips"].append(bad)  # an unlabeled clip: it would get a file in the package
    metrics_path.write_text(json.dumps(metrics))
    before = _tree(tmp_path)
    with pytest.raises(InputError, match=rf"metrics\.json: all_clips: unsafe clip name '{bad}'"):
        build_package(pf, tmp_path / "new" / "deeper" / "sub", label="Doe_ABC", track="a", authors=AUTHORS,
                      log=lambda s: None)
    assert _tree(tmp_path) == before
    assert not (tmp_path / "escaped.json").exists() and not (tmp_path.parent / "escaped.json").exists()
    assert not list(tmp_path.parent.glob("calib_abs_escaped_test*")) and not (tmp_path / "new").exists()
    import os
    assert not os.path.exists("/tmp/calib_abs_escaped_test.json")


@pytest.mark.parametrize("change, msg", [
    ({"variant": "../../../data"}, "unsafe variant name '../../../data'"),
    ({"variant": "/etc"}, "unsafe variant name '/etc'"),
    ({"variant": "v99"}, "variant 'v99' has no folder variants/v99"),
    ({"rank": 7}, "rank 7: expected a distinct whole number 1..4"),
    ({"rank": "1"}, "rank '1'"),
])
def test_portfolio_values_that_become_paths_are_checked(portfolio_dir, tmp_path, toys, change, msg):
    pf, portfolio = _tampered_copy(portfolio_dir, tmp_path)
    portfolio["chosen"][2].update(change)
    (pf / "portfolio.json").write_text(json.dumps(portfolio))
    before = _tree(tmp_path)
    with pytest.raises(InputError, match=msg) as e:
        build_package(pf, tmp_path / "out", label="Doe_ABC", track="a", authors=AUTHORS, log=lambda s: None)
    assert "portfolio.json" in str(e.value)
    assert _tree(tmp_path) == before


def test_a_package_refused_by_the_official_rules_leaves_no_folder(portfolio_dir, tmp_path, toys):
    before = _tree(tmp_path)
    with pytest.raises(InputError, match="breaks the official rules"):
        build_package(portfolio_dir, tmp_path / "made" / "for" / "it", label="Doe_ABC", track="a", authors=AUTHORS,
                      abbreviations=["TOOLONGNAME"] * 4, log=lambda s: None)
    assert _tree(tmp_path) == before


def test_importing_calib_makes_polars_return_freed_memory_at_once(tmp_path):
    """calib sets polars' jemalloc to return freed pages at once (at dev scale retained pages held
    gigabytes); jemalloc reads the last setting of the variable, and a user's own choice is kept."""
    import subprocess
    import sys

    code = "import calib, polars, os; print(os.environ['_RJEM_MALLOC_CONF'])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "_RJEM_MALLOC_CONF"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("dirty_decay_ms:0,muzzy_decay_ms:0")
    mine = subprocess.run([sys.executable, "-c", code], env={**env, "_RJEM_MALLOC_CONF": "narenas:2"},
                          capture_output=True, text=True, check=True).stdout
    assert "dirty_decay_ms:0" not in mine and mine.strip().endswith("narenas:2")
