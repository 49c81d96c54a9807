"""Import layering of calib: ``python -m calib.devtools.layers`` fails (exit 1) on an import that
points up the layer order, or on a cycle between modules, listing ``file:line`` and the import.

Every module of the package is read with :mod:`ast` (nothing is imported), function-level imports
included (an import inside a function is still an arrow; only ``if TYPE_CHECKING:`` blocks are
skipped). A module belongs to the layer of the longest prefix naming it in :data:`LAYERS`; a module
no layer names is reported too, so a new top-level module must be placed. A module may import its
own layer and any lower one, never a higher one.

The layers, lowest first (the order data flows is files -> io -> tables -> stages -> emit -> files
-> score; the order *imports* may go is this one):

=========  ===========================================  ==========================================
layer      modules                                      why there
=========  ===========================================  ==========================================
core       calib (the package), constants, publish,     the challenge's constants and file hash,
           registry, params, plotting                   atomic publishing, the plug-in registry,
                                                        typed parameters, plot colours: used by all,
                                                        they import nothing of calib but each other
data       io, tables                                   files <-> typed tables: the readers build
                                                        tables of ``calib.tables``' schemas, the
                                                        schemas check clip names with ``io``'s rule
                                                        (one layer: arrows either way are fine;
                                                        cycles between modules are not)
canvas     canvas                                       the batch geometry kit on the sphere
features   features (the top-level package)             the matchability features (use canvas)
score      score                                        the official metrics; reads tables, files
rerank     rerank                                       rerankers learn from scorer labels
stages     stages                                       post-processing; fusion, gating and
                                                        class_filter learn from scores, the rerank
                                                        stage wraps calib.rerank
adapters   adapters                                     model outputs -> tables (stage helpers)
recipe     recipe                                       chains of stages, scored, cached
portfolio  portfolio                                    variants of a recipe, honestly estimated
package    package                                      a portfolio's systems as a submission
cli        cli, __main__, devtools                      the commands; may import anything
=========  ===========================================  ==========================================

This is the issue's order io -> tables -> stages -> score -> recipe -> portfolio -> cli with two
documented variants: io and tables form one layer, and score sits *below* stages, because stages
use the scorer (the learning fusion stages, the gate and class_filter fit on per-class metrics and
per-detection IoUs, mask_fusion renders with the official renderer) while the scorer needs no stage:
it is a library that reads tables and files. Scoring a recipe's output is the recipe layer's job.
"""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

#: (layer, module prefixes), lowest layer first
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("calib", "calib.constants", "calib.publish", "calib.registry", "calib.params", "calib.plotting")),
    ("data", ("calib.io", "calib.tables")),
    ("canvas", ("calib.canvas",)),
    ("features", ("features",)),
    ("score", ("calib.score",)),
    ("rerank", ("calib.rerank",)),
    ("stages", ("calib.stages",)),
    ("adapters", ("calib.adapters",)),
    ("recipe", ("calib.recipe",)),
    ("portfolio", ("calib.portfolio",)),
    ("package", ("calib.package",)),
    ("cli", ("calib.cli", "calib.__main__", "calib.devtools")),
)


@dataclass(frozen=True)
class Import:
    """One import statement's arrow: ``module`` (in ``path`` at ``line``) imports ``target``."""

    module: str
    target: str
    path: str
    line: int
    text: str


@dataclass(frozen=True)
class Problem:
    kind: str  # "upward", "cycle" or "unplaced"
    message: str

    def __str__(self) -> str:
        return self.message


def module_files(root: Path, package: str) -> dict[str, Path]:
    """{dotted module name: file} of every ``.py`` file under ``root`` (the package's folder)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = (package, *f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, known: set[str], prefixes: Sequence[str]) -> list[Import]:
    """The arrows of one module to modules named in ``prefixes`` (top-level names, e.g. calib,
    features). ``from a.b import c`` points at ``a.b.c`` when that is a module of the tree, else at
    ``a.b``; relative imports are resolved against ``module``."""
    src = path.read_text(encoding="utf-8")
    lines = src.splitlines()
    is_pkg = path.name == "__init__.py"
    out = []
    for node in _import_nodes(ast.parse(src, filename=str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                parent = module.split(".") if is_pkg else module.split(".")[:-1]
                parent = parent[:len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                targets.append(sub if sub in known else base)
        for t in targets:
            if t.split(".")[0] in prefixes:
                text = lines[node.lineno - 1].strip() if node.lineno <= len(lines) else ""
                out.append(Import(module, t, str(path), node.lineno, text))
    return sorted(set(out), key=lambda i: (i.path, i.line, i.target))


def layer_of(module: str, layers=LAYERS) -> tuple[int, str] | None:
    """(index, name) of the layer whose longest prefix names ``module``; None when none does."""
    best = None
    for i, (name, prefixes) in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), i, name)
    return None if best is None else (best[1], best[2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, out = set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def _cycle_path(comp: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the first module of a component (breadth-first), closed."""
    members = set(comp)
    start = comp[0]
    prev = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return path[::-1] + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp + [start]  # not reached: a component is strongly connected


def check(root: str | Path, package: str = "calib", layers=LAYERS,
          external: Sequence[str] = ("features",)) -> list[Problem]:
    """Every upward import, unplaced module and import cycle of the package in ``root`` (its folder),
    in a stable order. ``external``: other top-level packages the layers place (arrows into them
    are checked; they are not walked)."""
    root = Path(root)
    files = module_files(root, package)
    known = set(files)
    prefixes = (package, *external)
    problems: list[Problem] = []
    graph: dict[str, set[str]] = {m: set() for m in files}
    where: dict[tuple[str, str], Import] = {}
    for module, path in sorted(files.items()):
        mine = layer_of(module, layers)
        if mine is None:
            problems.append(Problem("unplaced", f"{path}:1: module {module} is in no layer (add it to LAYERS)"))
        for imp in imports_of(module, path, known, prefixes):
            if imp.target in known and imp.target != module:
                graph[module].add(imp.target)
                where.setdefault((module, imp.target), imp)
            theirs = layer_of(imp.target, layers)
            if mine is not None and theirs is not None and theirs[0] > mine[0]:
                problems.append(Problem("upward", f"{imp.path}:{imp.line}: upward import: {module} ({mine[1]}) imports "
                                                  f"{imp.target} ({theirs[1]}): {imp.text}"))
    for comp in _cycles(graph):
        cyc = _cycle_path(comp, graph)
        steps = [where[(a, b)] for a, b in zip(cyc, cyc[1:])]
        problems.append(Problem("cycle", "import cycle: " + " -> ".join(cyc) + "\n" + "\n".join(
            f"    {s.path}:{s.line}: {s.text}" for s in steps)))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calib.devtools.layers", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1]),
                    help="the package folder to check (default: the installed calib)")
    ap.add_argument("--package", default="calib", help="the package's dotted name (default calib)")
    args = ap.parse_args(argv)
    problems = check(args.root, args.package)
    for p in problems:
        print(p)
    n_up = sum(p.kind == "upward" for p in problems)
    n_cyc = sum(p.kind == "cycle" for p in problems)
    n_un = sum(p.kind == "unplaced" for p in problems)
    if problems:
        print(f"{n_up} upward import(s), {n_cyc} import cycle(s), {n_un} unplaced module(s)")
        return 1
    print(f"layers ok: {len(module_files(Path(args.root), args.package))} modules, no upward import, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
