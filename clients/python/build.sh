#!/usr/bin/env bash
# Checks the toolchain, that the committed stubs match proto/, and runs the unit tests.
# Exit 77: the toolchain is missing (no Python with grpcio, protobuf, grpcio-tools and pytest).
set -euo pipefail
source "$(dirname "$0")/_env.sh"
if ! "$PYTHON" -c 'import grpc, google.protobuf, grpc_tools, pytest' 2>/dev/null; then
    echo "clients/python: $PYTHON lacks grpcio/protobuf/grpcio-tools/pytest (run 'make venv')" >&2
    exit 77
fi
"$here/check-generated.sh"
# Lint and types when the dev tools are there (the repo's .venv has them).
if "$PYTHON" -c 'import ruff, mypy' 2>/dev/null; then
    (cd "$here" && "$PYTHON" -m ruff check -q src tests examples e2e && "$PYTHON" -m ruff format -q --check src tests examples e2e && "$PYTHON" -m mypy)
fi
"$PYTHON" -m compileall -q "$here/src" "$here/examples" "$here/e2e" >/dev/null
(cd "$here" && "$PYTHON" -m pytest -q tests)
