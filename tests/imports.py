"""The import graph of the repository's Python code, read with ``ast`` (nothing is imported).

Every ``import`` and ``from ... import`` counts, at module level or inside a
function (a function-level import is still a dependency; it only runs
later), except those under ``if TYPE_CHECKING:``. Importing ``a.b.c`` runs
``a/__init__.py`` and ``a/b/__init__.py`` first, so a module depends on its
parents' ``__init__`` modules too (:func:`closure`), but the graph's edges
(:func:`import_graph`) are only the names written in the code, so that a
package's ``__init__`` re-exporting its modules is not a cycle by itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path = REPO_ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(path: Path, root: Path = REPO_ROOT) -> set[str]:
    """Absolute module names ``path`` imports (``from x import y`` yields x.y
    as well as x: y may be a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def python_files(folders: Iterable[str], root: Path = REPO_ROOT) -> dict[str, Path]:
    """Module name -> file, for every .py file under ``folders`` of ``root``."""
    return {module_name(p, root): p for folder in folders
            for p in sorted((root / folder).rglob("*.py"))}


def import_graph(modules: dict[str, Path], root: Path = REPO_ROOT) -> dict[str, set[str]]:
    """Module -> the modules of ``modules`` it imports by name."""
    return {name: {t for t in imported_names(path, root) if t in modules and t != name}
            for name, path in modules.items()}


def closure(start: str, graph: dict[str, set[str]]) -> set[str]:
    """Every module importing ``start`` runs: its imports, transitively, and
    the ``__init__`` of every package on the way."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in graph:
            continue
        seen.add(name)
        todo.extend(graph[name])
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return out
