#!/usr/bin/env bash
# CI-only: installs Node.js and npm from Debian when missing. Idempotent, non-interactive.
# The npm dependencies (package-lock.json) are installed by build.sh's `npm ci`.
set -euo pipefail
if command -v node >/dev/null && command -v npm >/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
command -v node >/dev/null || apt-get install -y -qq --no-install-recommends nodejs >/dev/null
command -v npm >/dev/null || apt-get install -y -qq --no-install-recommends npm >/dev/null
