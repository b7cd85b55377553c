"""`--event-loop`: the daemon runs on the loop it was told to, and a started daemon answers
on each (the rest of the suite runs its in-process daemons on the default one)."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest

from tests.support.daemon import spawn
from trackd.config import SettingsError, settings_from
from trackd.event_loop import loop_factory, run, running_loop_name
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc


async def loop_name() -> str:
    return running_loop_name()


def test_auto_and_uvloop_run_on_uvloop_and_asyncio_on_asyncios_own_loop() -> None:
    assert run(loop_name(), "auto") == "uvloop"  # uvloop is a dependency
    assert run(loop_name(), "uvloop") == "uvloop"
    assert run(loop_name(), "asyncio") == "asyncio"


def test_an_unknown_loop_is_one_clear_problem_at_start() -> None:
    with pytest.raises(SettingsError) as error:
        settings_from({"event_loop": "trio"}, {})
    assert error.value.problems == ("--event-loop 'trio': expected one of auto, uvloop, asyncio",)


@pytest.mark.parametrize(
    ("flag", "expected"), [((), "uvloop"), (("--event-loop", "asyncio"), "asyncio")]
)
def test_a_daemon_says_which_loop_it_runs_and_answers_on_it(
    tmp_path: Path, flag: tuple[str, ...], expected: str
) -> None:
    with spawn(tmp_path / "data", *flag) as process:
        with grpc.insecure_channel(f"127.0.0.1:{process.port}") as channel:
            reply = pb_grpc.TrackingServiceStub(channel).Activate(
                pb.ActivateRequest(experiment_key="checkout_flow", user_id="ann"), timeout=10
            )
        assert reply.variation_key
        [started] = [line for line in process.log_lines() if line.get("event") == "started"]
        assert started["event_loop"] == expected
        assert process.stop() == 0


def test_auto_falls_back_to_asyncio_when_uvloop_does_not_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed but broken (a wheel for another Python): auto runs anyway, on asyncio."""
    broken = tmp_path / "uvloop"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('built for another Python')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "uvloop", raising=False)
    assert loop_factory("auto") is None
    assert run(loop_name(), "auto") == "asyncio"
    with pytest.raises(ImportError):
        loop_factory("uvloop")
