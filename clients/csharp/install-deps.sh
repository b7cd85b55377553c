#!/usr/bin/env bash
# What generate.sh (and so `generate.sh --check`) needs; building the client itself needs
# the .NET 8 SDK and NuGet, which CI does not have. Idempotent, non-interactive, as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(protobuf-compiler libprotoc-dev libprotobuf-dev libgrpc-dev g++ pkg-config)
if dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
  echo "clients/csharp: ${PACKAGES[*]} already installed"
  exit 0
fi
apt-get update -qq
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
