# Sourced by the scripts: which Python to use. The repo's .venv (made by `make venv`) already
# has grpcio, protobuf, grpcio-tools and pytest; set PYTHON to use another interpreter.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"
