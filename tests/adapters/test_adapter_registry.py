"""Adapter discovery: built-ins, entry points of installed packages, the protocol's checks. No torch needed."""
import subprocess
import sys
import textwrap

import pytest

from calib.adapters import Adapter, AdapterError, registry
from calib.adapters.base import check_adapter_class, input_files
from calib.io.errors import InputError
from adapter_test_utils import ROOT, calib_subprocess


def test_builtins_are_listed_without_importing_them():
    specs = {s.name: s for s in registry.specs()}
    assert {"energy-instance", "accdoa", "audio-prior"} <= set(specs)
    assert specs["accdoa"].target == "calib.adapters.accdoa:AccdoaAdapter"


def test_calib_and_the_registry_import_without_torch():
    code = ("import sys, calib, calib.tables, calib.adapters, calib.adapters.registry, calib.adapters.runner, "
            "calib.adapters.points, calib.adapters.acs, calib.cli.adapt, calib.cli.main; "
            "calib.cli.main.build_parser(); calib.adapters.names(); assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(AdapterError, match=r"unknown adapter 'nope'; known: .*accdoa.*audio-prior"):
        registry.find("nope")


class Echo(Adapter):
    name = "echo"
    kind = "priors"
    defaults = {"alpha": 1.0}


class Echo2(Echo):
    defaults = {"beta": [1, 2]}


def test_parameters_are_stored_merged_over_the_class_hierarchy_and_checked():
    a = Echo2(beta=[3])
    assert a.get_params() == {"alpha": 1.0, "beta": [3]} and a.alpha == 1.0
    with pytest.raises(AdapterError, match=r"unknown parameter\(s\) \['gamma'\]; known: \['alpha', 'beta'\]"):
        Echo2(gamma=1)


def test_protocol_check():
    check_adapter_class(Echo, "echo", "x:Echo")
    with pytest.raises(AdapterError, match="kind must be one of"):
        check_adapter_class(type("T", (Echo,), {"kind": "truth"}), "t", "x:T")
    with pytest.raises(AdapterError, match="no run"):
        check_adapter_class(type("U", (), {"kind": "teacher", "load": lambda self: 0}), "u", "x:U")
    with pytest.raises(AdapterError, match="not a class"):
        check_adapter_class(Echo(), "e", "x:e")


def test_input_files_expands_folders_and_rejects_clashing_clips(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.wav", "a/y.flac", "a/z.txt", "a/.hidden.wav", "x.flac"):
        (tmp_path / name).write_bytes(b"")
    assert input_files([tmp_path / "a"], (".wav", ".flac")) == [tmp_path / "a/x.wav", tmp_path / "a/y.flac"]
    with pytest.raises(InputError, match="clip name 'x' also given"):
        input_files([tmp_path / "a", tmp_path / "x.flac"], (".wav", ".flac"))
    with pytest.raises(InputError, match="no such file"):
        input_files([tmp_path / "missing"], (".wav",))
    with pytest.raises(InputError, match="no input files"):
        input_files([tmp_path / "a"], (".ogg",))


def fake_install(site, dist, version, entry_points):
    """A dist-info folder with an entry_points.txt: what an installer leaves behind."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[calib.adapters]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


def test_entry_points_add_adapters_and_clashes_are_reported(tmp_path, monkeypatch):
    fake_install(tmp_path, "shadow-pkg", "1.0", {"accdoa": "shadow:Accdoa", "plain": "shadow_mod:Plain"})
    (tmp_path / "shadow_mod.py").write_text(textwrap.dedent("""
        from calib.adapters import Adapter
        class Plain(Adapter):
            kind = "priors"
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    specs = [s for s in registry.specs() if s.source == "shadow-pkg 1.0"]
    assert [(s.name, s.target) for s in specs] == [("accdoa", "shadow:Accdoa"), ("plain", "shadow_mod:Plain")]
    assert registry.get_adapter("plain").__name__ == "Plain"
    with pytest.raises(AdapterError, match="'accdoa' is declared more than once"):
        registry.find("accdoa")


def test_broken_entry_point_names_its_package(tmp_path, monkeypatch):
    fake_install(tmp_path, "broken-pkg", "0.1", {"broken": "no_such_module_xyz:Thing"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AdapterError, match=r"'broken' \(no_such_module_xyz:Thing, from broken-pkg 0.1\) cannot be imported"):
        registry.get_adapter("broken")


def test_installed_example_package_is_listed(example_pkg_path):
    proc = calib_subprocess(["adapt", "--list"], extra_path=[example_pkg_path])
    assert proc.returncode == 0, proc.stderr
    assert "window-rms-prior" in proc.stdout and "from calib-example-adapter 0.1.0" in proc.stdout
    for name in ("energy-instance", "accdoa", "audio-prior"):
        assert proc.stdout.count(f"{name}  ") >= 1
