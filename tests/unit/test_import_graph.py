"""The import graph of the project's packages: the direction rules of DESIGN.md and no cycles.

Every `.py` file of the packages below is parsed with `ast` (nothing is imported) and each import is
resolved to the project module it names. Every import counts, wherever it stands: at module level,
inside a function, or under `if TYPE_CHECKING:`. A lazy or type-only import runs later or never, but
the module still depends on the other one, and moving an import into a function to dodge a cycle
leaves the cycle in the design; such a cycle is fixed by moving the shared piece into a module both
can import. Dynamic imports (`importlib`, `__import__`, uvicorn's "module:attr" strings) are not seen.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "indexer", "ner", "trainer", "reader", "quantize", "pipeline", "server", "cli")
CORE = ("common", "indexer", "ner", "trainer", "reader", "quantize", "pipeline")

# What each package may import of ours: DESIGN.md's Layout table, by package or module prefix.
ALLOWED: dict[str, frozenset[str]] = {
    "common": frozenset(),
    "indexer": frozenset({"common"}),
    # ner fills the indexer's Enricher with the indexer's own types (indexer.types.Entity, Hit) and reads
    # the workspace for entity search; the indexer never imports ner (it is handed an enricher).
    "ner": frozenset({"common", "indexer"}),
    "trainer": frozenset({"common", "indexer"}),
    # the extractive reader reuses the QA question and sentence helpers of trainer.lm (pure functions) and
    # names its spaCy pipeline as ner does (`auto`)
    "reader": frozenset({"common", "indexer", "ner", "trainer.lm"}),
    # quantize reads LM checkpoints and data (trainer.lm, never trainer.embedder) and opens the workspace
    "quantize": frozenset({"common", "indexer", "trainer.lm"}),
    "pipeline": frozenset({"common", "indexer", "ner", "trainer", "reader", "quantize"}),
    "server": frozenset({"common", "indexer", "ner", "trainer", "reader", "quantize", "pipeline"}),
    "cli": frozenset({"common", "indexer", "ner", "trainer", "reader", "quantize", "pipeline", "server"}),
}

# Third-party libraries that belong to one front end or one model family: spaCy stays in ner (the
# indexer receives an enricher and never imports spaCy) and the reader (its own parsing pipeline, loaded
# in reader.serve), the web stack in server, Typer and the uvicorn launcher in cli, llama.cpp and GGUF in quantize.
THIRD_PARTY_OWNERS: dict[str, frozenset[str]] = {
    "spacy": frozenset({"ner", "reader"}),
    "thinc": frozenset({"ner"}),
    "fastapi": frozenset({"server"}),
    "starlette": frozenset({"server"}),
    "prometheus_client": frozenset({"server"}),
    "uvicorn": frozenset({"server", "cli"}),
    "typer": frozenset({"cli"}),
    "llama_cpp": frozenset({"quantize"}),
    "gguf": frozenset({"quantize"}),
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # the project module it resolves to, or the top-level name of a third-party library
    line: int
    ours: bool

    def where(self) -> str:
        return f"{self.importer} (line {self.line}) imports {self.target}"


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The longest project module that `name` (a.b.c) is or lies in, if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports_of(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[Import] = []

    def add(name: str, line: int) -> None:
        target = _resolve(name)
        if target is not None:
            if target != module:
                out.append(Import(module, target, line, True))
        else:
            out.append(Import(module, name.split(".")[0], line, False))

    for node in ast.walk(tree):  # the whole tree: functions and TYPE_CHECKING blocks too
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..a import b
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from pkg import module` names a module, `from mod import obj` an object
                sub = f"{source}.{alias.name}"
                add(sub if sub in MODULES else source, node.lineno)
    return list(dict.fromkeys(out))  # `from m import a, b` is one import of m


IMPORTS: list[Import] = [imp for mod, path in MODULES.items() for imp in _imports_of(mod, path)]


def _package(module: str) -> str:
    return module.split(".")[0]


def _module(module: str) -> str:
    return module


def _allowed(importer: str, target: str) -> bool:
    pkg = _package(importer)
    if _package(target) == pkg:
        return True
    return any(target == p or target.startswith(p + ".") for p in ALLOWED[pkg])


def _graph(node_of) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if imp.ours:
            a, b = node_of(imp.importer), node_of(imp.target)
            graph.setdefault(a, set())
            graph.setdefault(b, set())
            if a != b:
                graph[a].add(b)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path a -> ... -> a) through each strongly connected component of two or more nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, set(comp)) for comp in components]


def _cycle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the component's first node, by breadth-first search inside it."""
    start = min(comp)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:  # v's path back to start, reversed, closed
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("not a strongly connected component")


def _cycle_report(cycles: list[list[str]], node_of) -> str:
    """Each cycle's path, and under each step the import statements that make it (three at most)."""
    lines = []
    for cycle in cycles:
        lines.append(" -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:]):
            lines += [f"    {imp.where()}" for imp in IMPORTS
                      if imp.ours and node_of(imp.importer) == a and node_of(imp.target) == b][:3]
    return "\n".join(lines)


def test_the_scan_sees_the_project():
    assert {"common.settings", "indexer.search", "server.app", "cli.main", "trainer.lm.model"} <= set(MODULES)
    assert any(i.importer == "cli.main" and i.target == "cli.index_cmds" for i in IMPORTS)
    # an import inside a function counts too (`build` imports the pipeline when it runs)
    assert any(i.importer == "cli.build_cmds" and i.target == "pipeline.build" for i in IMPORTS)


@pytest.mark.parametrize("core", CORE)
def test_no_core_package_imports_a_front_end(core):
    bad = [imp.where() for imp in IMPORTS if imp.ours and _package(imp.importer) == core
           and _package(imp.target) in ("server", "cli")]
    assert not bad, f"{core} is core and must not import server or cli:\n" + "\n".join(bad)


def test_server_does_not_import_the_cli():
    bad = [imp.where() for imp in IMPORTS if imp.ours and _package(imp.importer) == "server" and _package(imp.target) == "cli"]
    assert not bad, "server must not import cli:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_design_direction(package):
    bad = [imp.where() for imp in IMPORTS if imp.ours and _package(imp.importer) == package
           and not _allowed(imp.importer, imp.target)]
    allowed = ", ".join(sorted(ALLOWED[package])) or "nothing of ours"
    assert not bad, f"{package} may import {allowed} (DESIGN.md, Layout):\n" + "\n".join(bad)


@pytest.mark.parametrize("library", sorted(THIRD_PARTY_OWNERS))
def test_third_party_libraries_stay_in_their_package(library):
    owners = THIRD_PARTY_OWNERS[library]
    bad = [imp.where() for imp in IMPORTS if not imp.ours and imp.target == library
           and _package(imp.importer) not in owners]
    assert not bad, f"{library} belongs to {', '.join(sorted(owners))}:\n" + "\n".join(bad)


def test_no_import_cycle_between_modules():
    cycles = _cycles(_graph(_module))
    assert not cycles, ("import cycles (move the shared piece into a module both can import):\n"
                        + _cycle_report(cycles, _module))


def test_no_import_cycle_between_packages():
    cycles = _cycles(_graph(_package))
    assert not cycles, "import cycles between packages:\n" + _cycle_report(cycles, _package)


def test_cycle_finder_reports_the_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"x": {"y"}, "y": set()}) == []
