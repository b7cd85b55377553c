#!/usr/bin/env bash
# Regenerates trackdv1/ from proto/ with protoc-gen-go and protoc-gen-go-grpc at the pinned
# versions (versions.env) and the protoc of the pinned grpcio-tools.
# Usage: generate.sh [OUT_DIR]   (default: this directory, i.e. in place; writes OUT_DIR/trackdv1)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
"$here/plugins.sh"
module=github.com/trackd-dev/trackd/clients/go
mkdir -p "$out"
"$PYTHON" -m grpc_tools.protoc -I"$root/proto" \
    --plugin=protoc-gen-go="$here/.bin/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$here/.bin/protoc-gen-go-grpc" \
    --go_out="$out" --go_opt=module=$module \
    --go-grpc_out="$out" --go-grpc_opt=module=$module \
    trackd/v1/tracking_service.proto
