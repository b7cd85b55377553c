#!/usr/bin/env bash
# CI installs for the Python client: nothing beyond the repo's .venv, which `make venv`
# (run by `make test`) creates with grpcio, protobuf, grpcio-tools==1.85.1 and pytest.
set -euo pipefail
echo "clients/python: no extra dependencies (uses the repo's .venv)"
