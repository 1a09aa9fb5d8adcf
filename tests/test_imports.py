"""Imports flow one way (docs/architecture.md): no cycles in shard/, and the store imports
neither the swarm nor the API."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "shard"


def _imports() -> dict[str, set[str]]:
    """Each module's imports of other shard modules, TYPE_CHECKING ones included."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def test_no_import_cycles() -> None:
    graph = _imports()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError(" -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_store_imports_neither_the_swarm_nor_the_api() -> None:
    for name, targets in _imports().items():
        if name.startswith("shard.store"):
            outside = {t for t in targets if t.startswith(("shard.swarm", "shard.api"))}
            assert not outside, f"{name} imports {outside}"
