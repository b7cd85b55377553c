"""One name per thing in trackd: no module-level alias of a function or class, and no
function that only hands its own arguments on to another (a leftover name kept "for now")."""

from __future__ import annotations

import ast
from pathlib import Path

import trackd

PACKAGE = Path(trackd.__file__).parent
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "v1" not in p.relative_to(PACKAGE).parts)


def _doc_stripped(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        return body[1:]
    return body


def second_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    defined = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    found: list[str] = []
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign) else None
        if isinstance(node, ast.Assign) and isinstance(value, ast.Name) and value.id in defined:
            names = ", ".join(ast.unparse(target) for target in node.targets)
            found.append(f"{names} = {value.id}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = _doc_stripped(node.body)
        if len(body) != 1 or not isinstance(body[0], ast.Return):
            continue
        call = body[0].value
        if not isinstance(call, ast.Call | ast.Await):
            continue
        call = call.value if isinstance(call, ast.Await) else call
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            continue
        params = [arg.arg for arg in node.args.args if arg.arg not in ("self", "cls")]
        passed = [arg.id if isinstance(arg, ast.Name) else None for arg in call.args]
        if passed == params and not call.keywords:
            found.append(f"def {node.name}(...): return {ast.unparse(call)}")
    return found


def test_nothing_in_trackd_has_a_second_name() -> None:
    found = {
        str(path.relative_to(PACKAGE)): names for path in SOURCES if (names := second_names(path))
    }
    assert found == {}
