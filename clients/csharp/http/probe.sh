#!/usr/bin/env bash
# One Activate with the client's timeout and token options, for
# tests/clients/test_http_json_clients.py: needs TRACKD_HTTP_URL and PROBE_TIMEOUT (seconds);
# PROBE_TOKEN, when not empty, is the bearer token. build.sh first.
set -euo pipefail
cd "$(dirname "$0")"
: "${TRACKD_HTTP_URL:?}" "${PROBE_TIMEOUT:?}"
exec mono bin/Probe.exe
