#!/usr/bin/env bash
# CI: Debian's PHP CLI with its curl extension. Idempotent, non-interactive, as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(php-cli php-curl)
if dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
  echo "clients/php: ${PACKAGES[*]} already installed"
  exit 0
fi
apt-get update -qq
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
