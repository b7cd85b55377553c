"""trackd's modules import one way: no cycle, even through type-only imports, and each one
imports alone in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import trackd

PACKAGE = Path(trackd.__file__).parent
GENERATED = "trackd.v1"  # protoc's output: not ours to arrange (and __main__ runs the CLI)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if not module_name(path).startswith(GENERATED) and path.name != "__main__.py"
}


def imported_at_module_level(name: str, path: Path) -> set[str]:
    """The trackd modules `name` imports at import time, counting `if TYPE_CHECKING:` imports
    as real (one such import turned real must not make a cycle). Imports inside functions are
    deliberate deferrals and do not count."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                submodules = {f"{base}.{alias.name}" for alias in node.names} & MODULES.keys()
                found.update(submodules or {base})
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(node.orelse)

    visit(ast.parse(path.read_text()).body)
    return {module for module in found if module in MODULES and module != name}


def cycles() -> list[list[str]]:
    graph = {name: imported_at_module_level(name, path) for name, path in MODULES.items()}
    found: list[list[str]] = []
    done: set[str] = set()

    def walk(name: str, trail: list[str]) -> None:
        if name in trail:
            found.append([*trail[trail.index(name) :], name])
            return
        if name in done:
            return
        for imported in sorted(graph[name]):
            walk(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        walk(name, [])
    return found


def test_no_module_imports_itself_back_even_through_type_only_imports() -> None:
    assert cycles() == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_imports_alone_in_a_fresh_interpreter(name: str) -> None:
    """Whatever a caller imports first works: no module relies on another being loaded."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_command_line_loads_no_grpc_until_it_serves() -> None:
    """`trackd --help` and a settings mistake answer at once: grpc is imported only to serve."""
    check = "import sys, trackd.cli; sys.exit(any(m.startswith('grpc') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr or "trackd.cli imported grpc"
