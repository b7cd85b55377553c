#!/usr/bin/env bash
# Builds the Java client: generates the stubs from ../../proto, compiles, runs the unit tests,
# and writes target/classpath.txt for e2e.sh. Exit 77 when the toolchain is missing.
set -euo pipefail
cd "$(dirname "$0")"

for tool in javac mvn; do
    if ! command -v "$tool" >/dev/null; then
        echo "java: $tool not found (clients/java/install-deps.sh installs it)" >&2
        exit 77
    fi
done
release=$(javac -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/')
if [ "${release:-0}" -lt 17 ] 2>/dev/null; then
    echo "java: JDK 17 or newer needed, found $(javac -version 2>&1)" >&2
    exit 77
fi

mvn -q -B package
# -q hides Surefire's summary: print one line from its reports instead.
python3 - <<'PY' 2>/dev/null || true
import glob, xml.etree.ElementTree as ET
t = f = e = s = 0
for path in glob.glob("target/surefire-reports/TEST-*.xml"):
    r = ET.parse(path).getroot()
    t += int(r.get("tests")); f += int(r.get("failures")); e += int(r.get("errors")); s += int(r.get("skipped"))
print(f"java: {t - f - e - s} passed, {f + e} failed, {s} skipped")
PY
