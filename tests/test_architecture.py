"""The shape of the house (issue 15): no import circles between curate's modules, and no module over ~600 lines.

The import graph is read from the source (ast), not by importing: an edge A -> B for every `import` of B in A, plus
B's parent packages that A does not share (importing `curate.checks.code` runs `curate/checks/__init__.py` first).
Two graphs: top-level imports only (what runs when a module is imported), and also the imports inside functions
(what runs later). Imports under `if TYPE_CHECKING:` are not edges. What is left is listed below, with the reason;
a new circle or a new long file fails, and so does an entry here that no longer applies (remove it).

    python tests/test_architecture.py      # prints both graphs' circles and the long files
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "curate"
MAX_LINES = 600

# files still over MAX_LINES (each is being split by whoever owns it; remove the entry when it is under)
LONG_FILES_LEFT: set[str] = set()

# circles that only function-level imports close (none may be closed by top-level imports)
CIRCLES_LEFT: set[frozenset[str]] = set()


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _imports(tree: ast.AST, top_level_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    def walk(node: ast.AST, nested: bool) -> Iterator[ast.Import | ast.ImportFrom]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)) and not (inner and top_level_only):
                yield child
            yield from walk(child, inner)

    yield from walk(tree, False)


def import_graph(top_level_only: bool) -> dict[str, set[str]]:
    """Module -> the curate modules it imports (see the module docstring)."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets: list[str] = []
        for node in _imports(ast.parse(path.read_text(encoding="utf-8")), top_level_only):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
                continue
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)] + ([node.module] if node.module else [])
                module = ".".join(base)
            else:
                module = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                targets.append(f"{module}.{alias.name}" if f"{module}.{alias.name}" in mods else module)
        edges = set()
        for target in targets:
            if target in mods:
                edges |= {target} | (_ancestors(target) - _ancestors(name))
        edges.discard(name)
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.add(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def _show(graph: dict[str, set[str]], comp: frozenset[str]) -> str:
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & comp))}" for m in sorted(comp))


def long_files() -> dict[str, int]:
    out = {}
    for path in modules().values():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            out[path.relative_to(ROOT).as_posix()] = n
    return out


def test_no_top_level_import_circle() -> None:
    graph = import_graph(top_level_only=True)
    found = circles(graph)
    assert not found, "top-level import circles (move the shared piece down a layer):\n" + "\n".join(
        _show(graph, c) for c in found
    )


def test_no_new_import_circle_with_function_level_imports() -> None:
    graph = import_graph(top_level_only=False)
    found = circles(graph)
    new = [c for c in found if c not in CIRCLES_LEFT]
    assert not new, "new import circles (function-level imports included):\n" + "\n".join(
        _show(graph, c) for c in new
    )
    gone = [sorted(c) for c in CIRCLES_LEFT if c not in found]
    assert not gone, f"these circles are gone: remove them from CIRCLES_LEFT: {gone}"


def test_no_new_long_file() -> None:
    found = long_files()
    new = {f: n for f, n in found.items() if f not in LONG_FILES_LEFT}
    assert not new, f"files over {MAX_LINES} lines (split them along their seams): {new}"
    done = sorted(LONG_FILES_LEFT - set(found))
    assert not done, f"now at most {MAX_LINES} lines: remove them from LONG_FILES_LEFT: {done}"


def test_the_graph_sees_a_circle_and_a_lazy_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: a circle through a function-level import is in the second graph only."""
    pkg = tmp_path / "curate"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from curate.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from curate import a\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from curate import a\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert circles(import_graph(top_level_only=True)) == []
    assert circles(import_graph(top_level_only=False)) == [frozenset({"curate.a", "curate.sub.b"})]
    assert import_graph(top_level_only=False)["curate.c"] == set()


if __name__ == "__main__":
    for top in (True, False):
        g = import_graph(top_level_only=top)
        print("top-level imports:" if top else "top-level and function-level imports:")
        for c in circles(g):
            print("  circle:", _show(g, c))
    for f, n in sorted(long_files().items(), key=lambda x: -x[1]):
        print(f"  {n:5d} {f}")
