"""The package's import graph: no cycle, and no module imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "grokscope"

# Data flows one way: task -> model -> engine -> trainer -> run store -> analysis -> report.
# A module may import its own layer and the layers before it (listed lowest first).
LAYERS = [
    {"_version", "config", "io", "cpu"},
    {"presets", "tasks", "models", "optim", "loss", "callbacks"},
    {"engine", "interventions", "runstore", "determinism", "loggers"},
    {"trainer", "run"},
    {"analysis"},
    {"sweeps"},
    {"report"},
    {"quickstart", "cli", "__init__"},
]


def _module(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(["grokscope", *parts]) if parts != ["__init__"] else "grokscope"


MODULES = {_module(p) for p in SRC.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every grokscope module this file imports, at any depth (function-level imports count too).
    `from grokscope.report import figures` imports the submodule grokscope.report.figures."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grokscope"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & MODULES
            out.update(subs or {node.module})
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("grokscope"))
    return out


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in SRC.rglob("*.py")}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_no_upward_import():
    bad = [(m, i) for m, imps in _graph().items() for i in imps if _layer(i) > _layer(m)]
    assert not bad, bad


def test_no_import_cycle_between_modules():
    graph = _graph()
    names = set(graph)

    def resolve(i: str) -> str:  # `from grokscope.analysis.modular import X` is the package's __init__
        return i if i in names else i.rsplit(".", 1)[0]

    edges = {m: {resolve(i) for i in imps if resolve(i) != m} for m, imps in graph.items()}
    # a package's __init__ re-exports its submodules; an edge submodule -> its own package is the cycle to find
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, stack: list[str]) -> bool:
        state[m] = 1
        for n in edges.get(m, ()):
            if state.get(n) == 1:
                cycle.extend(stack[stack.index(n):] + [m, n] if n in stack else [m, n])
                return True
            if state.get(n) is None and visit(n, stack + [m]):
                return True
        state[m] = 2
        return False

    for m in sorted(edges):
        if state.get(m) is None and visit(m, []):
            break
    assert not cycle, " -> ".join(cycle)
