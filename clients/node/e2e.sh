#!/usr/bin/env bash
# Runs the end-to-end program (docs/dev/clients-e2e.md) against $TRACKD_ADDRESS; build.sh first.
set -euo pipefail
cd "$(dirname "$0")"
: "${TRACKD_ADDRESS:?set TRACKD_ADDRESS=host:port}"
exec node dist/examples/e2e.js
