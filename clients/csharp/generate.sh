#!/usr/bin/env bash
# Regenerates Generated/ (committed) from ../../proto with protoc's C# generator and
# grpc_csharp_plugin:
#
#   protoc -I../../proto --csharp_out=Generated --grpc_out=Generated \
#     --plugin=protoc-gen-grpc=<grpc_csharp_plugin> trackd/v1/tracking_service.proto
#
# Debian 12 ships no grpc_csharp_plugin binary, so this script first builds one from
# tools/grpc_csharp_plugin.cc against Debian's libgrpc_plugin_support (gRPC 1.51.1),
# which contains gRPC's C# generator. Set GRPC_CSHARP_PLUGIN to use another plugin
# binary (e.g. the one inside the Grpc.Tools NuGet package).
#
#   ./generate.sh           rewrite Generated/
#   ./generate.sh --check   fail if Generated/ differs from a fresh generation
#
# Needs (Debian): protobuf-compiler libprotoc-dev libgrpc-dev g++ pkg-config.
set -euo pipefail
cd "$(dirname "$0")"
PROTO=trackd/v1/tracking_service.proto
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

plugin=${GRPC_CSHARP_PLUGIN:-}
if [[ -z "$plugin" ]]; then
  plugin="$tmp/grpc_csharp_plugin"
  g++ -std=c++17 -O1 -o "$plugin" tools/grpc_csharp_plugin.cc \
    $(pkg-config --cflags protobuf) -lgrpc_plugin_support -lprotoc $(pkg-config --libs protobuf)
fi

mkdir -p "$tmp/out"
protoc -I../../proto --csharp_out="$tmp/out" --grpc_out="$tmp/out" \
  --plugin=protoc-gen-grpc="$plugin" "$PROTO"

if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r "$tmp/out" Generated; then
    echo "clients/csharp: Generated/ is stale: run clients/csharp/generate.sh" >&2
    exit 1
  fi
  echo "clients/csharp: Generated/ is up to date"
else
  rm -rf Generated && mkdir -p Generated
  cp "$tmp/out"/*.cs Generated/
  echo "clients/csharp: wrote $(ls Generated | tr '\n' ' ')"
fi
