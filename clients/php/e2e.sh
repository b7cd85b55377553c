#!/usr/bin/env bash
# docs/dev/clients-e2e.md over the HTTP port: needs TRACKD_HTTP_URL and E2E_RUN_ID; the last
# stdout line is the JSON.
set -euo pipefail
cd "$(dirname "$0")"
: "${TRACKD_HTTP_URL:?}" "${E2E_RUN_ID:?}"
exec php e2e/e2e.php
