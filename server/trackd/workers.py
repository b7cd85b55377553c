"""`trackd serve --workers N`: N daemon processes sharing one port through SO_REUSEPORT.

One Python process is one core; N workers are N cores. The kernel spreads incoming
*connections* over the workers' listening sockets (a gRPC client's channel is one
connection, so it sticks to one worker: balance comes from many clients or channels).

Each worker is a whole daemon with its own data dir, `worker-<i>` under `--data-dir`, because
the SQLite outbox belongs to one process (it takes a file lock). Activations must be shared,
or an Activate on one worker and a Track on another would not meet: N > 1 uses the host-local
store (LMDB in `--activation-dir`, the supervisor's `DATA_DIR/activations`, which every worker
opens) unless Redis is given, and refuses `--activation-store memory`. With
`--metrics-listen HOST:P`, worker i serves P + i.

The supervisor forwards SIGTERM and SIGINT to every worker (each drains as a single daemon
does; a second signal forces the exit), restarts a worker that dies unexpectedly after a
second (doubling, up to 30 s, while it keeps dying within a minute of starting), and gives up
(stopping the others) if a worker fails its first start (exit code 2: a setting or the
datafile is wrong, and restarting would loop).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import structlog

from trackd import lifeline
from trackd.config import Settings, SettingsError
from trackd.errors import DatafileError

log = structlog.get_logger("trackd.workers")

EXIT_STARTUP_FAILURE = 2  # a setting or the datafile is wrong: restarting cannot help
RESTART_DELAY_S = 1.0  # doubled per quick death in a row, up to RESTART_DELAY_MAX_S
RESTART_DELAY_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a worker that lived this long starts its backoff afresh


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker `index`'s settings: its own data dir, and its own metrics port; the local
    activation store of the supervisor's data dir, which every worker shares."""
    changes: dict[str, object] = {
        "data_dir": settings.data_dir / f"worker-{index}",
        "activation_dir": settings.resolved_activation_dir,
    }
    if settings.metrics_listen:
        host, _, port = settings.metrics_listen.rpartition(":")
        if int(port):
            changes["metrics_listen"] = f"{host}:{int(port) + index}"
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def stranded_outboxes(settings: Settings) -> dict[Path, int]:
    """Outboxes under `--data-dir` that this `--workers` setting will not open, with their
    undelivered events: left by a run with another worker count (1 uses the data dir itself,
    N use `worker-0` .. `worker-<N-1>`)."""
    from trackd.events.outbox import undelivered_in
    from trackd.server import outbox_path

    if settings.workers == 1:
        mine = {outbox_path(settings)}
    else:
        mine = {outbox_path(worker_settings(settings, i)) for i in range(settings.workers)}
    candidates = [outbox_path(settings), *settings.data_dir.glob("worker-*/outbox.sqlite3")]
    found = {path: undelivered_in(path) for path in candidates if path not in mine}
    return {path: count for path, count in found.items() if count}


def warn_about_stranded_outboxes(settings: Settings) -> None:
    for path, count in stranded_outboxes(settings).items():
        log.warning(
            "stranded_outbox",
            path=str(path),
            undelivered=count,
            advice=f"deliver them with `trackd serve --data-dir {path.parent} --listen"
            " 127.0.0.1:0` and the same --event-endpoint, stopped once its outbox is empty",
        )


def startup_failed(error: SettingsError | DatafileError) -> int:
    """Tells a mistake in the settings or the datafile, one line each; the exit code."""
    lines = error.problems if isinstance(error, SettingsError) else (f"datafile {error}",)
    # One write with the newlines in it, not print()'s text then newline: `--workers N` all
    # fail at once on the same stderr, and two workers' texts interleaved before either
    # newline ran their lines together. A pipe write of under 4 KiB is atomic.
    sys.stderr.write("".join(f"trackd: {line}\n" for line in lines))
    sys.stderr.flush()
    return EXIT_STARTUP_FAILURE


def serve_one(settings: Settings) -> int:
    """`trackd serve` in one process: the whole daemon, or one of `--workers N`; the exit
    code."""
    import asyncio

    from trackd import event_loop, logs, server

    try:
        prepared = server.prepare(settings)
    except (DatafileError, SettingsError) as error:
        return startup_failed(error)
    logs.configure(settings.log_level, settings.log_format)
    try:
        event_loop.run(server.serve(settings, prepared), settings.event_loop)
    except OSError as error:
        structlog.get_logger("trackd").error("startup_failed", error=str(error))
        return EXIT_STARTUP_FAILURE
    except asyncio.CancelledError:
        return 1
    return 0


def _worker(
    settings: Settings, index: int, run: Callable[[Settings], int], supervisor: int
) -> None:
    # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which forwards
    # it once (two would force the worker's exit).
    os.setpgrp()
    lifeline.exit_with_parent(supervisor)  # a SIGKILLed supervisor leaves no worker behind
    structlog.contextvars.bind_contextvars(worker=index)
    sys.exit(run(settings))


def supervise(
    settings: Settings,
    workers: int,
    *,
    run: Callable[[Settings], int] = serve_one,
) -> int:
    """Runs `workers` worker processes until SIGTERM/SIGINT; returns the exit code (0 when
    every worker drained cleanly). `Settings` has already refused N > 1 with the memory
    activation store or with port 0."""
    context = multiprocessing.get_context("spawn")  # no fork: gRPC's threads do not survive it
    stopping = False
    processes: dict[int, BaseProcess] = {}
    started_at: dict[int, float] = {}
    crashes: dict[int, int] = {}  # consecutive quick deaths, for the restart backoff

    def start(index: int) -> None:
        if stopping:
            return  # a signal came while the others were starting: start no more
        process = context.Process(
            target=_worker,
            args=(worker_settings(settings, index), index, run, os.getpid()),
            name=f"trackd-worker-{index}",
        )
        process.start()
        processes[index] = process
        started_at[index] = time.monotonic()
        log.info("worker_started", worker=index, pid=process.pid)
        if stopping and process.pid is not None:  # the signal came during process.start()
            os.kill(process.pid, signal.SIGTERM)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes.values():
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signum)

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    code = 0
    try:
        for index in range(workers):
            start(index)
        restart_at: dict[int, float] = {}  # by worker: when to restart it; inf when done
        while True:
            running = [p.sentinel for p in processes.values() if p.exitcode is None]
            if running:
                multiprocessing.connection.wait(running, timeout=0.2)
            else:
                time.sleep(0.05)  # every worker is waiting for its restart
            for index, process in list(processes.items()):
                if process.exitcode is None or index in restart_at:
                    continue
                exitcode = process.exitcode
                if stopping:
                    if exitcode != 0 and code == 0:  # a failed first start's 2 stays
                        code = 1
                    restart_at[index] = float("inf")  # done
                    continue
                log.error("worker_exited", worker=index, pid=process.pid, exitcode=exitcode)
                if exitcode == EXIT_STARTUP_FAILURE and index not in crashes:
                    # Its first start: a setting or the datafile is wrong, and restarting
                    # would loop. (A restarted worker failing to start, say while a datafile
                    # is being rewritten, is retried like a crash.)
                    code = EXIT_STARTUP_FAILURE
                    on_signal(signal.SIGTERM, None)
                    restart_at[index] = float("inf")
                    continue
                lived = time.monotonic() - started_at[index]
                crashes[index] = 0 if lived > STABLE_AFTER_S else crashes.get(index, 0) + 1
                delay = min(RESTART_DELAY_MAX_S, RESTART_DELAY_S * 2 ** crashes[index])
                restart_at[index] = time.monotonic() + delay
            now = time.monotonic()
            for index, when in list(restart_at.items()):
                if stopping:
                    restart_at[index] = float("inf")  # no restarts once stopping
                elif when <= now:
                    del restart_at[index]
                    start(index)
            # Done when no worker runs and every exit was seen above with nothing to restart.
            alive = any(p.exitcode is None for p in processes.values())
            settled = len(restart_at) == len(processes) and all(
                when == float("inf") for when in restart_at.values()
            )
            if not alive and settled:
                break
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("workers_stopped", exitcode=code)
    return code


__all__ = [
    "EXIT_STARTUP_FAILURE",
    "serve_one",
    "startup_failed",
    "stranded_outboxes",
    "supervise",
    "warn_about_stranded_outboxes",
    "worker_settings",
]
