"""Data never executes: no call in calib/ or features/ can unpickle or evaluate what a file holds,
and every place that imports a module by name is one that checks where the name came from.

The checker reads the source as Python (ast), so aliases (``from joblib import load``) and
keyword spellings are seen; it is itself tested on snippets whose verdict is known."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("calib", "features")
#: modules whose loaders run code from the bytes they read
PICKLERS = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve"}
#: files allowed to call importlib.import_module, each with the reason it is safe; a new caller
#: must check where the module name came from and be added here by review
IMPORTERS = {
    "calib/cli/main.py": "the fixed list of calib's own sub-commands",
    "calib/registry.py": "built-in modules and targets named in calib's code, installed entry points",
    "calib/adapters/torch_adapter.py": "a model-config architecture, only after --allow-import",
    "features/registry.py": "built-ins, installed 'calib.features' entry points, allowed modules",
    "calib/score/parallel.py": "import_modules: module lists fixed in calib's code (calib.portfolio.run's "
                               "POOL_MODULES, CHAIN_MODULES)",
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expression>"
    return None


def problems(source: str, name: str = "<snippet>") -> list[str]:
    """Every unsafe load in ``source``, as 'name:line: what'."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> module.attribute it stands for
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                if a.name.split(".")[0] in PICKLERS:
                    out.append(f"{name}:{node.lineno}: imports {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            if node.module.split(".")[0] in PICKLERS:
                out.append(f"{name}:{node.lineno}: imports from {node.module}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        raw = _dotted(node.func)
        head, _, rest = raw.partition(".")
        full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        where = f"{name}:{node.lineno}: {raw}"
        if full in ("joblib.load", "pandas.read_pickle") or full.endswith(".read_pickle"):
            out.append(f"{where} unpickles")
        elif full in ("numpy.load", "np.load") and _keyword(node, "allow_pickle") not in (None, False):
            out.append(f"{where} with allow_pickle={_keyword(node, 'allow_pickle')}")
        elif full == "torch.load" and _keyword(node, "weights_only") is not True:
            out.append(f"{where} without weights_only=True")
        elif full in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"):
            out.append(f"{where}: use yaml.safe_load")
        elif isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec", "__import__"):
            out.append(f"{where} evaluates code")
    return out


def _sources():
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            yield f.relative_to(ROOT).as_posix(), f.read_text(encoding="utf-8")


@pytest.mark.parametrize("snippet, found", [
    ("import pickle\npickle.load(f)", ["imports pickle"]),
    ("from joblib import load\nload('state.joblib')", ["unpickles"]),
    ("import joblib as jl\njl.load('x')", ["unpickles"]),
    ("import joblib\njoblib.Parallel(n_jobs=2)", []),
    ("import numpy as np\nnp.load(p, allow_pickle=True)", ["allow_pickle=True"]),
    ("import numpy as np\nnp.load(p, allow_pickle=flag)", ["allow_pickle=<expression>"]),
    ("import numpy as np\nnp.load(p, allow_pickle=False)\nnp.load(p)", []),
    ("import torch\ntorch.load(p)", ["without weights_only=True"]),
    ("import torch\ntorch.load(p, weights_only=False)", ["without weights_only=True"]),
    ("import torch\ntorch.load(p, map_location='cpu', weights_only=True)", []),
    ("import yaml\nyaml.load(s)\nyaml.safe_load(s)", ["use yaml.safe_load"]),
    ("eval(text)", ["evaluates code"]),
    ("module.eval()", []),
    ("import polars as pl\npl.read_parquet(p)", []),
])
def test_the_checker_knows_safe_from_unsafe(snippet, found):
    got = problems(snippet)
    assert len(got) == len(found) and all(f in g for f, g in zip(found, got)), got


def test_no_unsafe_load_in_calib_or_features():
    found = [p for name, text in _sources() for p in problems(text, name)]
    assert found == []


def test_modules_are_imported_by_name_only_where_the_name_is_checked():
    callers = set()
    for name, text in _sources():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and _dotted(node.func) in ("importlib.import_module", "import_module"):
                callers.add(name)
    assert callers == set(IMPORTERS), "review the new caller, then list it in IMPORTERS"
