#!/usr/bin/env bash
# CI installs for the Go client: the pinned protoc plugins (into clients/go/.bin) and the
# module's dependencies. Needs Go (>= the go.mod version) and network access to the Go module
# proxy; protoc comes from the repo's .venv (grpcio-tools), made by `make venv`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
if ! command -v go >/dev/null; then
    echo "clients/go: go is not installed (install Go >= 1.25 from go.dev; the module itself needs >= 1.24)" >&2
    exit 1
fi
"$here/plugins.sh"
(cd "$here" && go mod download)
