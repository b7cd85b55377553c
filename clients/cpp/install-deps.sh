#!/usr/bin/env bash
# CI: Debian's gRPC C++ (1.51), protoc, grpc_cpp_plugin, CMake and a compiler.
# Idempotent, non-interactive, as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev pkg-config cmake g++)
if dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
  echo "clients/cpp: ${PACKAGES[*]} already installed"
  exit 0
fi
apt-get update -qq
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
