#!/usr/bin/env bash
# Fails when the committed trackdv1/ differs from what the pinned generators make from proto/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$here/generate.sh" "$tmp"
if ! diff -r "$tmp/trackdv1" "$here/trackdv1"; then
    echo "clients/go: generated stubs are stale: run clients/go/generate.sh" >&2
    exit 1
fi
echo "clients/go: generated stubs are up to date"
