#!/usr/bin/env bash
# Runs the end-to-end page in headless Chromium (e2e/drive.mjs) against trackd's HTTP port;
# build.sh first. The pages are served by the caller (tests/clients/test_browser_client.py)
# from two origins: BROWSER_PAGE_URL, listed in trackd's --http-cors-origins, and
# BROWSER_REFUSED_PAGE_URL, not listed. Exit 77 when Chromium is missing.
set -euo pipefail
cd "$(dirname "$0")"
: "${TRACKD_HTTP_URL:?set TRACKD_HTTP_URL=http://host:port (trackd --http-listen)}"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    echo "browser: $chromium not found (clients/browser/install-deps.sh installs Debian's chromium)" >&2
    exit 77
fi
CHROMIUM="$chromium" exec node e2e/drive.mjs
