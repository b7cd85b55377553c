"""Only trackd.rpc, the protobuf edge, imports grpc and protobuf: ruff's banned-api rule
(TID251, configured in pyproject.toml) says so, and these tests prove the rule bites."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "server" / "trackd"
EDGE_IMPORTS = (
    "import grpc",
    "import grpc.aio",
    "from grpc import aio",
    "from grpc_health.v1 import health_pb2",
    "from grpc_reflection.v1alpha import reflection",
    "from google.protobuf.struct_pb2 import Value",
    "from trackd.v1 import tracking_service_pb2",
    "import trackd.v1.tracking_service_pb2",
    "from connectrpc.errors import ConnectError",
    "from trackd.v1 import tracking_service_connect",
)
EDGE_ROOTS = (
    "grpc",
    "grpc_health",
    "grpc_reflection",
    "google.protobuf",
    "trackd.v1",
    "connectrpc",
)


def ruff() -> str:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert found, "ruff is a dev dependency"
    return found


def banned(source: str, path: str) -> bool:
    done = subprocess.run(
        [ruff(), "check", "--select", "TID251", "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 1 and "TID251" in done.stdout


@pytest.mark.parametrize("source", EDGE_IMPORTS)
def test_the_lint_rule_refuses_grpc_and_protobuf_outside_the_edge(source: str) -> None:
    assert banned(source + "\n", "server/trackd/events/anything.py")
    assert banned(source + "\n", "server/trackd/tracking.py")


@pytest.mark.parametrize("source", EDGE_IMPORTS)
def test_the_edge_may_import_them(source: str) -> None:
    assert not banned(source + "\n", "server/trackd/rpc/anything.py")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_module_outside_the_edge_imports_grpc_or_protobuf() -> None:
    """The same boundary read from the code itself, lazy imports inside functions included."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ("rpc", "v1"):
            continue
        hits = {
            name
            for name in imported_modules(path)
            if any(name == root or name.startswith(root + ".") for root in EDGE_ROOTS)
        }
        if hits:
            offenders[str(relative)] = sorted(hits)
    assert offenders == {}
