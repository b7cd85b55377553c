#!/usr/bin/env bash
# Fails when the committed stubs differ from what the pinned grpcio-tools makes from proto/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$here/generate.sh" "$tmp"
if ! diff -r -x __init__.py -x __pycache__ "$tmp/trackd_client/_proto" "$here/src/trackd_client/_proto"; then
    echo "clients/python: generated stubs are stale: run clients/python/generate.sh" >&2
    exit 1
fi
echo "clients/python: generated stubs are up to date"
