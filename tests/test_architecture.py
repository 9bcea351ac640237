"""The house's shape: no import cycle among the modules of compiler/ and passes/ (DESIGN.md, style 5).

Read from the source, never by importing it: an edge A → B is any import statement in A, at the top or inside a
function, that names B; importing ``pkg.mod`` also runs ``pkg/__init__.py``, so it is an edge to ``pkg`` too.
A cycle is a strongly connected group of two or more modules, reported with the imports that close it.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compiler", "passes")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _targets(module: str, is_package: bool, node: ast.AST) -> list[str]:
    """The project modules one import statement names (absolute names)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    return [stem] + [f"{stem}.{a.name}" for a in node.names]


def _with_packages(name: str, modules: dict) -> set[str]:
    """``name`` and every package above it that is a project module (their __init__ runs on import)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first import naming it}."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(name, path.name == "__init__.py", node):
                for t in _with_packages(target, modules):
                    # a module reading its own package's names (``from . import Builder``) runs nothing new; a
                    # package importing its submodules does, and counts
                    if t != name and not name.startswith(t + "."):
                        edges.setdefault(t, node.lineno)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan's algorithm, iterative)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        group.append(w)
                        if w == v:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return groups


def test_the_checker_finds_a_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def test_relative_imports_resolve_to_modules():
    graph = import_graph()
    assert "compiler.errors" in graph["compiler.artifacts"]
    assert "passes.infra" in graph["passes.rules"]  # from ..infra import ...


def test_no_import_cycle_in_compiler_or_passes():
    graph = import_graph()
    found = cycles(graph)
    lines = []
    for group in found:
        members = set(group)
        closing = [f"{m}:{line} imports {t}" for m in group for t, line in sorted(graph[m].items()) if t in members]
        lines.append(f"{' ↔ '.join(group)} ({'; '.join(closing)})")
    assert not found, "import cycles:\n" + "\n".join(lines)
