"""The `trackd` command: `serve` runs the daemon, `health` asks a running one if it serves."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# None of these loads grpc: `trackd --help` stays quick (workers loads the server late).
from trackd import __version__, config, logs, workers


def _settings_epilog() -> str:
    lines = [
        "settings (flags of `trackd serve`; each also read from its TRACKD_* env var, then",
        "from the --config TOML file under its flag name; flags > env > file > default):",
    ]
    for option in config.OPTIONS:
        lines.append(f"  --{option.name:<26} {option.env:<34} default: {option.default_text}")
        lines.append(f"      {option.help}")
    return "\n".join(lines)


def _health_arguments(check: argparse.ArgumentParser) -> None:
    env = os.environ.get
    check.add_argument(
        "--address",
        default=env("TRACKD_HEALTH_ADDRESS", "127.0.0.1:50051"),
        help="HOST:PORT of trackd [env TRACKD_HEALTH_ADDRESS]",
    )
    check.add_argument("--timeout", type=float, default=3.0, help="seconds to wait")
    check.add_argument(
        "--tls",
        action="store_true",
        default=bool(env("TRACKD_HEALTH_TLS")),
        help="connect with TLS, trusting the system roots unless --tls-ca [env TRACKD_HEALTH_TLS]",
    )
    for flag, meaning in (
        ("tls-ca", "PEM CA that signed the daemon's certificate; implies --tls"),
        ("tls-cert", "client certificate, for a daemon that requires mutual TLS"),
        ("tls-key", "private key of --tls-cert"),
        ("tls-server-name", "name to verify in the daemon's certificate (default: the host)"),
    ):
        name = "TRACKD_HEALTH_" + flag.replace("-", "_").upper()
        check.add_argument(f"--{flag}", default=env(name), help=f"{meaning} [env {name}]")


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
    _health_arguments(check)
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = config.settings_from(vars(args))
    except config.SettingsError as error:
        return workers.startup_failed(error)
    logs.configure(settings.log_level, settings.log_format)
    workers.warn_about_stranded_outboxes(settings)
    if settings.workers > 1:  # each worker prepares and serves on its own
        return workers.supervise(settings, settings.workers)
    return workers.serve_one(settings)


def _health(args: argparse.Namespace) -> int:
    from trackd.rpc import healthcheck  # imported late: `trackd --help` should not load grpc

    return healthcheck.check(
        args.address,
        timeout=args.timeout,
        use_tls=bool(args.tls or any((args.tls_ca, args.tls_cert, args.tls_server_name))),
        ca=Path(args.tls_ca) if args.tls_ca else None,
        cert=Path(args.tls_cert) if args.tls_cert else None,
        key=Path(args.tls_key) if args.tls_key else None,
        server_name=args.tls_server_name,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "health":
        return _health(args)
    parser.print_help()
    return workers.EXIT_STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
