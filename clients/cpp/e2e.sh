#!/usr/bin/env bash
# docs/dev/clients-e2e.md: needs TRACKD_ADDRESS and E2E_RUN_ID; the last stdout line is the JSON.
set -euo pipefail
cd "$(dirname "$0")"
: "${TRACKD_ADDRESS:?}" "${E2E_RUN_ID:?}"
exec ./build/trackd_e2e
