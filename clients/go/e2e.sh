#!/usr/bin/env bash
# Runs the end-to-end program against TRACKD_ADDRESS (docs/dev/clients-e2e.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${TRACKD_ADDRESS:?set TRACKD_ADDRESS=host:port of a running trackd}"
# Rebuilt every time (cheap with the build cache) so it never runs a stale binary.
(cd "$here" && go build -o "$here/.bin/e2e" ./cmd/e2e)
exec "$here/.bin/e2e"
