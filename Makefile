# One entry point for developers and CI. `make run` and `make test` are all a new user needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := tools/node_modules/.bin/buf
PROTO := proto/trackd/v1/tracking_service.proto
STAMP := $(VENV)/.installed

.PHONY: help venv run proto proto-check lint typecheck buf test test-fast test-unit \
	test-reliability reliability-report test-clients bench clean

help:
	@echo "make run    - create .venv, install trackd, serve the bundled example datafile"
	@echo "              (gRPC on 127.0.0.1:50051, HTTP on 127.0.0.1:8080)"
	@echo "make test   - lint, types, buf lint, stub check, unit + integration + parity,"
	@echo "              reliability and every client's tests, the benchmarks' smoke runs"
	@echo "make test-fast - unit + integration + parity without the slow and bench tests"
	@echo "make proto  - regenerate the Python stubs from proto/"
	@echo "make bench  - run the benchmarks (not part of make test)"

# pip's own lines (Collecting ..., Installing ...) are the progress of a first install,
# which downloads 1-2 minutes' worth of packages.
$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing trackd with its dev tools (a first run: 1-2 minutes)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)
	@echo "==> installed; later runs skip this step until pyproject.toml changes"

venv: $(STAMP)

# The HTTP port too (Connect, /healthz, /readyz); ARGS may name another --http-listen.
run: $(STAMP)
	$(VENV)/bin/trackd serve --http-listen 127.0.0.1:8080 $(ARGS)

$(BUF): tools/package.json
	cd tools && npm ci --no-audit --no-fund
	touch $(BUF)

# The Connect stubs (tracking_service_connect.py) come from connectrpc's own protoc plugin.
CONNECT_PLUGIN := --plugin=protoc-gen-connectrpc=$(VENV)/bin/protoc-gen-connectrpc

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=server --pyi_out=server \
		--grpc_python_out=server $(CONNECT_PLUGIN) --connectrpc_out=server $(PROTO)

# The committed stubs must be exactly what the pinned grpcio-tools makes from proto/.
proto-check: $(STAMP)
	@rm -rf build/proto-check && mkdir -p build/proto-check
	$(PY) -m grpc_tools.protoc -Iproto --python_out=build/proto-check \
		--pyi_out=build/proto-check --grpc_python_out=build/proto-check \
		$(CONNECT_PLUGIN) --connectrpc_out=build/proto-check $(PROTO)
	diff -r -x __init__.py -x __pycache__ build/proto-check/trackd/v1 server/trackd/v1 \
		|| (echo "generated stubs are stale: run 'make proto'" && exit 1)

buf: $(BUF)
	$(BUF) lint
	$(BUF) format -d --exit-code

lint: $(STAMP)
	$(VENV)/bin/ruff check server tests bench
	$(VENV)/bin/ruff format --check server tests bench
	$(VENV)/bin/hadolint Dockerfile

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Unit, integration and parity tests, and the benchmarks' --quick smoke runs.
test-unit: $(STAMP)
	$(VENV)/bin/pytest

# Every language's client against one real daemon (docs/dev/clients-e2e.md).
test-clients: $(STAMP)
	$(VENV)/bin/pytest tests/clients -v -rs

# Faults, crashes, overload and hostile input (docs/reliability.md); `make reliability-report`
# renders the figures of the last run into that page.
test-reliability: $(STAMP)
	$(VENV)/bin/pytest tests/reliability -rxf

reliability-report: $(STAMP)
	$(PY) -m tests.reliability.report

test: lint typecheck buf proto-check test-unit test-reliability test-clients

# What a developer runs between edits: no slow or timing-dependent tests, no benchmark smoke
# runs (`make test` still runs them all).
test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not slow and not bench"

# The full benchmarks (minutes; not part of make test). Results are appended to
# bench/results/<date>.md. ghz is the unary load generator when installed.
bench: $(STAMP)
	command -v ghz >/dev/null || go install github.com/bojand/ghz/cmd/ghz@v0.120.0 || true
	PATH="$$(go env GOPATH 2>/dev/null)/bin:$$PATH" $(PY) -m bench.run_all

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache
