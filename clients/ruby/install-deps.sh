#!/usr/bin/env bash
# CI: Debian's Ruby, gRPC and grpc_tools_ruby_protoc. Idempotent, non-interactive, as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(ruby ruby-grpc ruby-grpc-tools)
if dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
  echo "clients/ruby: ${PACKAGES[*]} already installed"
  exit 0
fi
apt-get update -qq
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
