#!/usr/bin/env bash
# CI-only: installs Node.js, npm and Chromium from Debian when missing. Idempotent,
# non-interactive, as root. The npm dependencies (package-lock.json: connect-es, esbuild,
# playwright-core, which drives this Chromium and never downloads a browser of its own) are
# installed by build.sh's `npm ci`.
set -euo pipefail
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
