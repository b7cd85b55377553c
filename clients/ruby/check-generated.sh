#!/usr/bin/env bash
# The committed stubs under lib/trackd/v1 must be exactly what grpc_tools_ruby_protoc
# makes from ../../proto. Regenerate with: ./check-generated.sh --write
set -euo pipefail
cd "$(dirname "$0")"
PROTO=trackd/v1/tracking_service.proto
gen() { grpc_tools_ruby_protoc -I../../proto --ruby_out="$1" --grpc_out="$1" "$PROTO"; }
if [[ "${1:-}" == "--write" ]]; then
  gen lib
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gen "$tmp"
if ! diff -r "$tmp/trackd/v1" lib/trackd/v1; then
  echo "clients/ruby: generated stubs are stale: run clients/ruby/check-generated.sh --write" >&2
  exit 1
fi
echo "clients/ruby: generated stubs are up to date"
