"""The import graph of the project's own packages, read from the source (nothing is imported).

    python tools/import_graph.py          # counts, layer violations, cycles, function-level imports

Used by `tests/fitter/test_layers.py` to hold the architecture: `representations` imports nothing of
`guidance` or `fitter`, `guidance` nothing of `fitter`, there are no import cycles, and project
modules are imported inside functions only where listed in `LAZY_ALLOWED` (optional heavy pieces).
"""

from __future__ import annotations

import ast
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "representations", "guidance", "fitter")
# A package may import only the packages listed for it.
ALLOWED_LAYERS = {
    "common": {"common"},
    "representations": {"common", "representations"},
    "guidance": {"common", "representations", "guidance"},
    "fitter": {"common", "representations", "guidance", "fitter"},
}


# (importer, imported) pairs allowed inside functions: optional, heavy or platform-specific pieces.
LAZY_ALLOWED = {
    ("fitter.batch.engine", "fitter.batch.ray_engine"),  # Ray: only when --engine ray
    ("fitter.batch.engine", "fitter.batch.submitit_engine"),  # submitit: only on a Slurm cluster
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported project module, dotted
    line: int
    in_function: bool
    type_only: bool  # under `if TYPE_CHECKING:`


@dataclass
class Graph:
    modules: dict[str, Path] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)

    def runtime_edges(self) -> dict[str, set[str]]:
        """Importer -> imported, including the packages Python runs first: importing `a.b.c` runs
        `a/__init__.py` and `a/b/__init__.py` too (except the importer's own packages, already running)."""
        edges: dict[str, set[str]] = {m: set() for m in self.modules}
        for imp in self.imports:
            if imp.type_only:
                continue
            parts = imp.target.split(".")
            for n in range(1, len(parts) + 1):
                target = ".".join(parts[:n])
                if target in self.modules and target != imp.source and not imp.source.startswith(target + "."):
                    edges[imp.source].add(target)
        return edges


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(graph: Graph, name: str) -> str | None:
    """The most specific project module `name` refers to (a module, or the package holding it)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in graph.modules:
            return candidate
        parts.pop()
    return None


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


class _Visitor(ast.NodeVisitor):
    def __init__(self, graph: Graph, module: str, is_package: bool) -> None:
        self.graph, self.module, self.is_package = graph, module, is_package
        self.depth = 0
        self.type_only = 0

    def _add(self, name: str, line: int) -> None:
        target = _resolve(self.graph, name)
        if target is not None:
            self.graph.imports.append(Import(self.module, target, line, self.depth > 0, self.type_only > 0))

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        is_tc = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        if is_tc:
            self.type_only += 1
            for child in node.body:
                self.visit(child)
            self.type_only -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(self.module, self.is_package, node.level, node.module)
        for alias in node.names:
            # `from pkg import mod` imports the module `pkg.mod`; `from mod import name` imports `mod`.
            self._add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in self.graph.modules else base, node.lineno)


def build(root: Path = ROOT) -> Graph:
    graph = Graph()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            graph.modules[module_name(path)] = path
    for module, path in graph.modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        _Visitor(graph, module, path.name == "__init__.py").visit(tree)
    return graph


def layer_violations(graph: Graph) -> list[Import]:
    return [i for i in graph.imports if i.target.split(".")[0] not in ALLOWED_LAYERS[i.source.split(".")[0]]]


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    edges = graph.runtime_edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _is_package_parent(source: str, target: str) -> bool:
    # A module importing its own package's __init__ (e.g. for re-exports) is not a cycle worth a count.
    return source.startswith(target + ".")


def function_level(graph: Graph) -> list[Import]:
    return [i for i in graph.imports if i.in_function and not i.type_only]


def summary(graph: Graph) -> dict:
    files = Counter(str(p.parent.relative_to(ROOT)) for p in graph.modules.values())
    fitter_top = [m for m, p in graph.modules.items() if p.parent == ROOT / "fitter"]
    within_fitter = {(i.source, i.target) for i in graph.imports if i.source.startswith("fitter") and i.target.startswith("fitter")}
    return {
        "files_per_folder": dict(sorted(files.items())),
        "fitter_top_level_modules": len(fitter_top),
        "imports_among_fitter_modules": len(within_fitter),
        "layer_violations": len(layer_violations(graph)),
        "cycles": len(cycles(graph)),
        "function_level_project_imports": len(function_level(graph)),
    }


def main() -> None:
    graph = build()
    for imp in layer_violations(graph):
        print(f"layer: {imp.source} imports {imp.target} (line {imp.line})")
    for component in cycles(graph):
        print("cycle: " + " ↔ ".join(component))
    for imp in function_level(graph):
        print(f"function-level: {imp.source}:{imp.line} imports {imp.target}")
    print(json.dumps(summary(graph)))


if __name__ == "__main__":
    main()
