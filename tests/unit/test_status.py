"""Domain errors become gRPC status codes in one place, `trackd.rpc.status`, and "no datafile
yet" is one error with one code wherever it is raised."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, NoReturn, cast

import grpc
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

import trackd
from tests.support.daemon import client_for, settings_for
from trackd.errors import BatchTooLarge, NoDatafileYet, TrackdError
from trackd.live import LiveConfig
from trackd.rpc import status
from trackd.v1 import tracking_service_pb2 as pb

SERVER = Path(trackd.__file__).parent
DATAFILE = Path(__file__).parent.parent / "data" / "datafile.json"


def test_reading_a_live_config_before_any_datafile_is_unavailable_like_the_guard() -> None:
    """The interceptor refuses a call with `NoDatafileYet` before its handler runs; a handler
    that reads the live config anyway (a race, or a non-RPC caller) gets the same error and
    code: UNAVAILABLE, what a client retries on while the daemon waits for its datafile."""
    with pytest.raises(TrackdError) as raised:
        _ = LiveConfig(None).config
    assert type(raised.value) is NoDatafileYet
    assert status.code_for(raised.value) == grpc.StatusCode.UNAVAILABLE
    assert str(raised.value) == str(NoDatafileYet())


def test_an_oversized_stream_batch_is_an_invalid_argument_naming_the_limit() -> None:
    too_large = BatchTooLarge(11, 10)
    assert status.number_for(too_large) == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "11 events" in str(too_large) and "limit of 10" in str(too_large)


def _status_makers(tree: ast.AST) -> list[str]:
    """Where a module names a grpc status code (`grpc.StatusCode.X`, `StatusCode.X`) or sets
    one on a call (`.abort(...)`, `.set_code(...)`) other than through `status.abort`."""
    found: list[str] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute | ast.Name)
            and (node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id)
            == "StatusCode"
        ):
            found.append(f"line {node.lineno}: StatusCode.{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("abort", "set_code", "abort_with_status")
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "status")
        ):
            found.append(f"line {node.lineno}: .{node.func.attr}(...)")
        if isinstance(node, ast.Call) and "ConnectError" in (
            getattr(node.func, "id", None),
            getattr(node.func, "attr", None),
        ):
            found.append(f"line {node.lineno}: ConnectError(...)")
    return found


def test_only_the_status_module_turns_errors_into_grpc_status_codes() -> None:
    """A new error is a row of `status._CODES`, never an inline status elsewhere."""
    offenders = {
        str(path.relative_to(SERVER)): found
        for path in sorted(SERVER.rglob("*.py"))
        if path.name != "status.py"
        and path.parent.name != "v1"  # generated stubs
        and (found := _status_makers(ast.parse(path.read_text(), str(path))))
    }
    assert offenders == {}


def test_the_status_lint_sees_an_inline_status() -> None:
    """The check above can fail: it finds each way of setting a status inline."""
    source = (
        "async def f(context):\n"
        "    await context.abort(grpc.StatusCode.INTERNAL, 'x')\n"
        "    context.set_code(StatusCode.NOT_FOUND)\n"
        "    return pb.Ack(code=grpc.StatusCode.INVALID_ARGUMENT.value[0])\n"
        "    await status.abort(context, error)\n"
        "    raise ConnectError(Code.NOT_FOUND, 'x')\n"
        "    raise errors.ConnectError(Code.NOT_FOUND, 'x')\n"
    )
    assert len(_status_makers(ast.parse(source))) == 7


@pytest.mark.parametrize("family", [family for family, _ in status._CODES])
async def test_a_connect_call_gets_the_connect_code_named_as_the_grpc_one(
    family: type[TrackdError],
) -> None:
    """The HTTP port's Connect errors come from the same table: the servicer's abort
    through `status.ConnectContext`, or `status.connect_error` before the servicer runs."""
    error = family("why")
    grpc_code = status.code_for(error)
    assert status.connect_error(error).code.name == grpc_code.name
    with pytest.raises(ConnectError) as raised:
        await status.abort(cast(Any, status.ConnectContext()), error)
    assert (raised.value.code.name, raised.value.message) == (grpc_code.name, "why")


async def test_cancelled_is_spelled_canceled_in_connect() -> None:
    with pytest.raises(ConnectError) as raised:
        await status.ConnectContext().abort(grpc.StatusCode.CANCELLED, "gone")
    assert raised.value.code is Code.CANCELED


async def test_an_unexpected_error_in_a_handler_is_internal_with_nothing_of_it_shown(
    tmp_path: Path,
) -> None:
    """The one status not mapped from a domain error: INTERNAL, through `status` too."""

    async def broken(*args: object) -> NoReturn:
        raise RuntimeError("secret detail")

    async with client_for(settings_for(tmp_path, datafile=DATAFILE)) as client:
        client.daemon.tracker.activate = broken  # type: ignore[method-assign,assignment]
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await client.stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="u"))
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert failed.value.details() == "internal error; see the daemon's log"
