"""The Makefile as a newcomer meets it, read through `make -n` (prints, runs nothing)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dry_run(target: str, venv: Path) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # Under `make test` this runs inside make: without the outer make's variables the inner
    # one neither prints "Entering directory" lines nor inherits its flags.
    outer = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
    env = {name: value for name, value in os.environ.items() if name not in outer}
    done = subprocess.run(
        ["make", "-n", f"VENV={venv}", target],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    return done.stdout.splitlines()


def test_a_first_install_says_what_it_does_and_lets_pip_show_its_progress(
    tmp_path: Path,
) -> None:
    commands = dry_run("venv", tmp_path / "fresh-venv")  # no stamp there: a first install
    assert any(line.startswith("echo") and "installing trackd" in line for line in commands)
    [install] = [line for line in commands if 'install -e ".[dev]"' in line]
    assert "--quiet" not in install and "-q " not in install


def test_test_fast_leaves_out_the_slow_and_benchmark_tests(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than pyproject.toml: no install step
    assert dry_run("test-fast", venv) == [f'{venv}/bin/pytest -m "not slow and not bench"']


def test_every_make_target_the_readme_names_exists(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()
    readme = (ROOT / "README.md").read_text()
    targets = set(re.findall(r"`make ([a-z][a-z-]*)", readme))
    assert {"run", "test", "test-fast", "bench"} <= targets
    for target in sorted(targets):
        assert dry_run(target, venv), target


def test_make_run_serves_the_http_port_on_8080_beside_grpc(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()
    [command] = dry_run("run", venv)
    assert command.split() == [f"{venv}/bin/trackd", "serve", "--http-listen", "127.0.0.1:8080"]
