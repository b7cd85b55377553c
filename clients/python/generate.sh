#!/usr/bin/env bash
# Regenerates the committed stubs from proto/ with the pinned grpcio-tools (see pyproject.toml).
# The proto is staged as trackd_client/_proto/v1/tracking_service.proto so the generated modules
# are trackd_client._proto.v1.* and never collide with the server's own trackd.v1 package.
# Usage: generate.sh [OUT_DIR]   (default: src, i.e. in place)
set -euo pipefail
source "$(dirname "$0")/_env.sh"
out="${1:-$here/src}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/trackd_client/_proto/v1" "$out"
cp "$root/proto/trackd/v1/tracking_service.proto" "$stage/trackd_client/_proto/v1/"
"$PYTHON" -m grpc_tools.protoc -I"$stage" \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    trackd_client/_proto/v1/tracking_service.proto
