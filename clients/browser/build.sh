#!/usr/bin/env bash
# Builds the browser client: installs the locked dependencies, generates the connect-es code
# from ../../proto, type-checks, bundles dist/trackd.js (the client, global `trackd`) and the
# end-to-end page, and runs the unit tests in Node. Exit 77 when the toolchain is missing.
set -euo pipefail
cd "$(dirname "$0")"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null; then
        echo "browser: $tool not found (clients/browser/install-deps.sh installs it)" >&2
        exit 77
    fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
    echo "browser: Node 18 or newer needed, found $(node --version)" >&2
    exit 77
fi

npm ci --no-audit --no-fund --loglevel=error
rm -rf dist src/generated
npm run --silent build
node --test dist/test/
