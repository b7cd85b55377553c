#!/usr/bin/env bash
# Lints every PHP file and runs the unit tests. Exit 77 when the toolchain is missing.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v php >/dev/null || ! php -r 'exit(function_exists("curl_init") ? 0 : 1);'; then
  echo "SKIP clients/php: missing php or its curl extension (run clients/php/install-deps.sh)" >&2
  exit 77
fi
for file in autoload.php src/*.php tests/*.php e2e/*.php examples/*.php; do
  php -l "$file" >/dev/null
done
for test in tests/*_test.php; do
  php "$test"
done
