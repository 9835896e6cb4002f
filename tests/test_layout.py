"""The package's layout is its architecture: wings with one job each, imports running one way.

A lower wing never imports a higher one (type-only imports included), and no module imports itself
back through a circle. docs/architecture.md draws the same order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import fakests

PACKAGE = Path(fakests.__file__).resolve().parent
# Lowest first. The top-level modules (cli, docs, __main__, __init__) sit above every wing.
WINGS = ["state", "sts", "failures", "admin", "server", "testing"]
TOP = len(WINGS)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(["fakests", *parts])] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # ``from ..state import defaults`` names a module
                yield f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {t for t in _imports(name, path, modules) if t in modules and t != name}
            for name, path in modules.items()}


def _rank(module: str) -> int:
    parts = module.split(".")
    return WINGS.index(parts[1]) if len(parts) > 2 or (len(parts) == 2 and parts[1] in WINGS) else TOP


def test_every_module_lives_in_a_wing() -> None:
    loose = {name for name in _modules() if _rank(name) == TOP} - {
        "fakests", "fakests.cli", "fakests.docs", "fakests.__main__"}
    assert not loose, f"modules outside the wings: {sorted(loose)}"
    for wing in WINGS:
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc) > 40, f"fakests/{wing}/__init__.py says what the wing is for"


def test_tests_mirror_the_wings() -> None:
    tests = Path(__file__).resolve().parent
    for wing in WINGS:
        assert list((tests / wing).glob("test_*.py")), f"tests/{wing}/ holds the tests of fakests/{wing}/"


def test_imports_run_one_way() -> None:
    upward = [f"{a} -> {b}" for a, targets in _graph().items() for b in targets
              if _rank(b) > _rank(a) and a != "fakests" and not b.startswith(a + ".")]
    assert not upward, "a lower wing imports a higher one:\n" + "\n".join(sorted(upward))


def test_no_import_circles() -> None:
    graph = _graph()
    graph["fakests"] = set()  # the public surface re-exports; nothing inside may import it
    inside = [a for a, targets in graph.items() if "fakests" in targets]
    assert not inside, f"modules importing the public surface: {inside}"
    circles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)
