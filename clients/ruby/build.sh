#!/usr/bin/env bash
# Checks the committed stubs and runs the unit tests. Exit 77 when the toolchain is missing.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v ruby >/dev/null || missing+=(ruby)
command -v grpc_tools_ruby_protoc >/dev/null || missing+=(grpc_tools_ruby_protoc)
if [[ ${#missing[@]} -eq 0 ]] && ! ruby -e 'require "grpc"; require "google/protobuf/struct_pb"' 2>/dev/null; then
  missing+=(ruby-grpc)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "SKIP clients/ruby: missing ${missing[*]} (run clients/ruby/install-deps.sh)" >&2
  exit 77
fi
./check-generated.sh
ruby -Ilib -Itest -e 'Dir["test/test_*.rb"].each { |f| require File.expand_path(f) }'
