"""`trackd serve` with experimental knobs, to measure a change before making it.

    .venv/bin/python -m bench.trackd_variant KNOBS serve [trackd serve options]

KNOBS is a comma-separated list of:
  sync-normal  the outbox's SQLite in WAL mode with synchronous=NORMAL instead of FULL:
               what `--outbox-sync normal` does (the Outbox starts its once-a-second WAL
               fsync for NORMAL either way); `bench_outbox_sync.py` compares the two modes.
  uvloop       the daemon's event loop (gRPC, HTTP, the outbox's wake-ups) on uvloop.
Used by `bench_grpc.py --variant KNOBS`, which runs this beside plain trackd and the bare
server. Nothing here changes trackd itself.
"""

from __future__ import annotations

import sys
from typing import Any

KNOBS = ("sync-normal", "uvloop")


def apply(knobs: list[str]) -> None:
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise SystemExit(f"unknown knobs {unknown}; known: {', '.join(KNOBS)}")
    if "sync-normal" in knobs:
        from trackd.events import outbox

        original_init = outbox.Outbox.__init__

        def init_normal(self: outbox.Outbox, *args: Any, **kwargs: Any) -> None:
            kwargs["synchronous"] = "NORMAL"
            original_init(self, *args, **kwargs)

        outbox.Outbox.__init__ = init_normal  # type: ignore[method-assign]
    if "uvloop" in knobs:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main() -> int:
    knobs = [k for k in sys.argv[1].split(",") if k]
    apply(knobs)
    from trackd import cli

    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
