#!/usr/bin/env bash
# Runs the end-to-end program against TRACKD_ADDRESS (docs/dev/clients-e2e.md).
set -euo pipefail
source "$(dirname "$0")/_env.sh"
: "${TRACKD_ADDRESS:?set TRACKD_ADDRESS=host:port of a running trackd}"
exec "$PYTHON" "$here/e2e/e2e.py"
