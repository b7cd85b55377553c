"""Command-line tools installed with `go install` (grpcurl, ghz): found on PATH or in
GOPATH/bin; missing, a test skips locally and fails under CI, which installs them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def go_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(
        str(Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin" / name)
    )
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} not installed: run .ci/run or `go install` it")
    return found
