#!/usr/bin/env bash
# CI: Debian's Mono C# compiler and runtime, and the framework assemblies the client uses
# (System.Net.Http's HttpClient, System.Web.Extensions' JavaScriptSerializer): no NuGet.
# Idempotent, non-interactive, as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(mono-mcs mono-runtime libmono-system-net-http4.0-cil libmono-system-web-extensions4.0-cil)
if dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
  echo "clients/csharp/http: ${PACKAGES[*]} already installed"
  exit 0
fi
apt-get update -qq
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
