"""The `trackd` command: `serve` runs the daemon, `health` asks a running one if it serves."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import structlog

from trackd import __version__, config, logs
from trackd.errors import DatafileError

EXIT_STARTUP_FAILURE = 2


def _settings_epilog() -> str:
    lines = ["settings (flags of `trackd serve`; each also read from its TRACKD_* env var):"]
    for option in config.OPTIONS:
        default = option.default if option.default is not None else "see help"
        lines.append(f"  --{option.name:<26} {option.env:<34} default: {default}")
        lines.append(f"      {option.help}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackd",
        description="trackd: a gRPC experiment-tracking daemon (Optimizely-exact decisions).",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trackd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the daemon")
    config.add_arguments(serve)
    check = commands.add_parser(
        "health", help="exit 0 if the daemon at --address answers SERVING, 1 otherwise"
    )
    check.add_argument("--address", default="127.0.0.1:50051", help="HOST:PORT of trackd")
    check.add_argument("--timeout", type=float, default=3.0, help="seconds to wait")
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = config.settings_from(vars(args))
    except config.SettingsError as error:
        for problem in error.problems:
            print(f"trackd: {problem}", file=sys.stderr)
        return EXIT_STARTUP_FAILURE
    logs.configure(settings.log_level, settings.log_format)
    from trackd import server  # imported late: `trackd --help` should not load grpc

    try:
        config_ = server.load_datafile(settings.datafile)
    except DatafileError as error:
        print(f"trackd: datafile {error}", file=sys.stderr)
        return EXIT_STARTUP_FAILURE

    async def main() -> None:
        await server.serve(settings, config_)

    try:
        asyncio.run(main())
    except OSError as error:
        structlog.get_logger("trackd").error("startup_failed", error=str(error))
        return EXIT_STARTUP_FAILURE
    except asyncio.CancelledError:
        return 1
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(args.address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=args.timeout
            )
        except grpc.RpcError as error:
            print(f"trackd health: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(name)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "health":
        return _health(args)
    parser.print_help()
    return EXIT_STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
