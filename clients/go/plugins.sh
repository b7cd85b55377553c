#!/usr/bin/env bash
# Installs the pinned protoc-gen-go and protoc-gen-go-grpc into clients/go/.bin (idempotent).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
bin="$here/.bin"
mkdir -p "$bin"
stamp="$bin/.versions"
want="$PROTOC_GEN_GO_VERSION $PROTOC_GEN_GO_GRPC_VERSION"
if [ -x "$bin/protoc-gen-go" ] && [ -x "$bin/protoc-gen-go-grpc" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
# Outside the module so its go.mod is not touched.
(cd / && GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION" \
    && GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION")
echo "$want" > "$stamp"
