#!/usr/bin/env bash
# Runs the end-to-end program (docs/dev/clients-e2e.md) against $TRACKD_ADDRESS; build.sh first.
set -euo pipefail
cd "$(dirname "$0")"
: "${TRACKD_ADDRESS:?set TRACKD_ADDRESS=host:port}"
exec java -cp "target/classes:$(cat target/classpath.txt)" dev.trackd.examples.E2e
