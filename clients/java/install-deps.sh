#!/usr/bin/env bash
# CI-only: installs a JDK (17+) and Maven from Debian when missing. Idempotent, non-interactive.
# The Maven dependencies (grpc-java, protobuf-java, protoc and protoc-gen-grpc-java binaries)
# come from Maven Central on the first build.sh.
set -euo pipefail
if command -v javac >/dev/null && command -v mvn >/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless maven >/dev/null
