#!/usr/bin/env bash
# Builds and vets the Go client, checks the committed stubs against proto/, runs the unit
# tests and builds the e2e program into .bin/e2e. Exit 77: Go, or the protoc of grpcio-tools
# (the repo's .venv) that check-generated.sh needs, is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if ! command -v go >/dev/null; then
    echo "clients/go: go is not installed" >&2
    exit 77
fi
root="$(cd "$here/../.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON
if ! "$PYTHON" -c 'import grpc_tools' 2>/dev/null; then
    echo "clients/go: no protoc for check-generated: $PYTHON lacks grpcio-tools (run 'make venv')" >&2
    exit 77
fi
go mod download
"$here/check-generated.sh"
go vet ./...
go build ./...
go test -race ./...  # -race: a data race fails the build instead of hanging a test now and then
go build -o "$here/.bin/e2e" ./cmd/e2e
