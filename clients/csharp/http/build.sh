#!/usr/bin/env bash
# Compiles the client (bin/Trackd.Http.dll), its unit tests, the end-to-end program and the
# probe with Mono's mcs, then runs the unit tests. Exit 77 when the toolchain is missing.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v mcs >/dev/null || missing+=(mcs)
command -v mono >/dev/null || missing+=(mono)
for assembly in System.Net.Http System.Web.Extensions; do
  [[ -f /usr/lib/mono/4.5/$assembly.dll ]] || missing+=("$assembly.dll")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "SKIP clients/csharp/http: missing ${missing[*]} (run clients/csharp/http/install-deps.sh)" >&2
  exit 77
fi
mkdir -p bin
FRAMEWORK=(-r:System.Net.Http.dll -r:System.Web.Extensions.dll)
mcs -nologo -warnaserror -target:library -out:bin/Trackd.Http.dll "${FRAMEWORK[@]}" src/*.cs
for program in tests/Tests e2e/E2e e2e/Probe examples/Track; do
  mcs -nologo -warnaserror -out:"bin/$(basename "$program").exe" -r:bin/Trackd.Http.dll "${FRAMEWORK[@]}" "$program.cs"
done
mono bin/Tests.exe ../../testdata/values.json
