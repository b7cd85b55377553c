"""Benchmark of the in-memory activation store (no thresholds: it reports figures).

    .venv/bin/python -m bench.bench_activation_cache           # full: 100k and 1M entries
    .venv/bin/python -m bench.bench_activation_cache --quick   # tiny counts, a smoke run

Memory per entry is measured in a fresh subprocess per size, two ways: tracemalloc (bytes
the store's Python allocations hold, exact) and RSS delta (what the OS sees, includes
allocator slack). User ids are made on the fly and dropped, as a server's request strings
are, so only what the store retains is counted. A naive layout (tuple key, tuple value,
float expiry) is measured beside it for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable

from trackd.activation import MemoryActivationStore

EXPERIMENTS = [f"2022{i:07d}" for i in range(10)]  # Optimizely-like numeric ids
VARIATIONS = [f"3033{i:07d}" for i in range(2)]
PER_USER = 4  # experiments each user is activated in


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def user_id(i: int, shape: str) -> str:
    if shape == "uuid":
        return f"{i:08x}-5f3c-4c1e-9a7b-{i * 2654435761 % 16**12:012x}"
    return f"user-{i}"


def entry(i: int, shape: str) -> tuple[str, str, str]:
    return (
        user_id(i // PER_USER, shape),
        EXPERIMENTS[i % len(EXPERIMENTS)],
        VARIATIONS[i % len(VARIATIONS)],
    )


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def fill(store: MemoryActivationStore, n: int, shape: str) -> None:
    for i in range(n):
        await store.put(*entry(i, shape))


def fill_naive(n: int, shape: str) -> OrderedDict[tuple[str, str], tuple[str, float]]:
    naive: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
    now = time.monotonic()
    for i in range(n):
        user, experiment, variation = entry(i, shape)
        naive[(user, experiment)] = (variation, now + 86_400.0)
    return naive


def measure_memory(n: int, mode: str, layout: str, shape: str) -> float:
    """Bytes per entry in this (fresh) process."""
    gc.collect()
    if mode == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = rss_bytes()
    if layout == "store":
        held: object = MemoryActivationStore(ttl=86_400, max_entries=n, clock=Clock())
        asyncio.run(fill(held, n, shape))  # type: ignore[arg-type]
    else:
        held = fill_naive(n, shape)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if mode == "tracemalloc" else rss_bytes()
    assert held is not None
    return (after - before) / n


def memory_in_subprocess(n: int, mode: str, layout: str, shape: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory", str(n), mode, layout, shape],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip())


async def ns_per_op(n: int, op: Callable[[int], object]) -> float:
    start = time.perf_counter_ns()
    for i in range(n):
        await op(i)  # type: ignore[misc]
    return (time.perf_counter_ns() - start) / n


def percentiles(samples: list[int]) -> dict[str, float]:
    samples.sort()
    return {
        "p50_us": round(samples[len(samples) // 2] / 1000, 2),
        "p99_us": round(samples[int(len(samples) * 0.99)] / 1000, 2),
        "max_us": round(samples[-1] / 1000, 2),
        "mean_us": round(statistics.fmean(samples) / 1000, 2),
    }


async def op_costs(n: int, ops: int) -> dict[str, float]:
    clock = Clock()
    store = MemoryActivationStore(ttl=86_400, max_entries=n, clock=clock)
    await fill(store, n, "short")
    users = max(1, n // PER_USER)
    hit = [entry(i % n, "short") for i in range(ops)]
    ids3 = EXPERIMENTS[:3]
    batch = [(user_id(i % users, "short"), ids3) for i in range(500)]

    async def nothing(user: str, experiment: str) -> None:
        return None

    result = {
        "baseline_await_of_empty_coroutine": await ns_per_op(
            ops, lambda i: nothing(hit[i][0], hit[i][1])
        ),
        "get_hit": await ns_per_op(ops, lambda i: store.get(hit[i][0], hit[i][1])),
        "get_miss": await ns_per_op(ops, lambda i: store.get(f"nobody-{i}", EXPERIMENTS[0])),
        "put_refresh": await ns_per_op(ops, lambda i: store.put(*hit[i])),
        "refresh_or_put_hit": await ns_per_op(
            ops, lambda i: store.refresh_or_put(hit[i][0], hit[i][1], None)
        ),
        "live_for_user_3_ids": await ns_per_op(ops, lambda i: store.live_for_user(hit[i][0], ids3)),
        "live_for_user_all_10": await ns_per_op(ops, lambda i: store.live_for_user(hit[i][0])),
        "live_for_users_per_lookup_batch_500": await ns_per_op(
            max(1, ops // 500), lambda _: store.live_for_users(batch)
        )
        / 500,
    }
    # New keys at the cap: each put evicts the least recently activated entry.
    result["put_new_evicting"] = await ns_per_op(
        ops, lambda i: store.put(f"new-{i}", EXPERIMENTS[i % 10], VARIATIONS[0])
    )
    return result


async def loop_gaps_while(work: Callable[[], object]) -> tuple[float, float, int]:
    """Run `work` as a task beside a ticker; return (work seconds, max loop gap ms, ticks)."""
    gaps: list[int] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter_ns()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter_ns()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = time.perf_counter()
    await work()  # type: ignore[misc]
    elapsed = time.perf_counter() - start
    done = True
    await tick
    return elapsed, max(gaps, default=0) / 1e6, len(gaps)


async def expiry_latency(n: int, ops: int) -> dict[str, object]:
    """Latency of get/put while `n` entries have all expired at once, and the loop stalls of
    the chunked background work (purge_expired, retain)."""
    clock = Clock()
    users = max(1, n // PER_USER)
    result: dict[str, object] = {}

    # Calls alone reclaim the expired entries, a bounded number each.
    store = MemoryActivationStore(ttl=60, max_entries=n, clock=clock)
    await fill(store, n, "short")
    clock.now += 61
    samples: list[int] = []
    for i in range(ops):
        start = time.perf_counter_ns()
        if i % 2:
            await store.put(f"late-{i}", EXPERIMENTS[i % 10], VARIATIONS[0])
        else:
            await store.get(user_id(i % users, "short"), EXPERIMENTS[i % 10])
        samples.append(time.perf_counter_ns() - start)
    result["get_put_while_all_expire"] = {
        "ops": ops,
        "expired_reclaimed_by_those_ops": n + ops // 2 - len(store),
        **percentiles(samples),
    }
    await store.close()

    # A background purge_expired of all of them, beside a ticker measuring loop stalls.
    store = MemoryActivationStore(ttl=60, max_entries=n, clock=clock)
    await fill(store, n, "short")
    clock.now += 61
    purged = 0

    async def purge() -> None:
        nonlocal purged
        purged = await store.purge_expired()

    elapsed, gap_ms, ticks = await loop_gaps_while(purge)
    result["purge_expired_all"] = {
        "reclaimed": purged,
        "seconds": round(elapsed, 3),
        "max_loop_stall_ms": round(gap_ms, 3),
        "loop_turns": ticks,
    }
    await store.close()

    # A datafile change dropping half the entries (half the experiments) of a full store.
    store = MemoryActivationStore(ttl=60, max_entries=n, clock=clock)
    await fill(store, n, "short")
    dropped = 0

    async def retain() -> None:
        nonlocal dropped
        dropped = await store.retain(lambda experiment, _: experiment not in EXPERIMENTS[:5])

    elapsed, gap_ms, ticks = await loop_gaps_while(retain)
    result["retain_dropping_half"] = {
        "dropped": dropped,
        "held_after": len(store),
        "seconds": round(elapsed, 3),
        "max_loop_stall_ms": round(gap_ms, 3),
        "loop_turns": ticks,
    }
    return result


async def growth_latency(n: int, shards: int | None) -> dict[str, float]:
    """Per-put latency while a store grows to `n` entries and then churns (each new key
    evicting one): dict resizes show up here as the maximum."""
    store = MemoryActivationStore(ttl=86_400, max_entries=n, clock=Clock(), shards=shards)
    samples: list[int] = []
    for i in range(n + n // 2):
        user, experiment, variation = entry(i, "short")
        start = time.perf_counter_ns()
        await store.put(user, experiment, variation)
        samples.append(time.perf_counter_ns() - start)
    return {"shards": store.shards, **percentiles(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, a smoke run")
    parser.add_argument("--memory", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        n, mode, layout, shape = args.memory
        print(measure_memory(int(n), mode, layout, shape))
        return

    sizes = [1_000, 4_000] if args.quick else [100_000, 1_000_000]
    ops = 2_000 if args.quick else 200_000
    report: dict[str, object] = {"python": sys.version.split()[0], "quick": args.quick}
    memory: dict[str, dict[str, float]] = {}
    for n in sizes:
        for shape in ("short", "uuid"):
            row = memory[f"{n}_{shape}_user_ids"] = {}
            for layout in ("store", "naive"):
                for mode in ("tracemalloc", "rss"):
                    row[f"{layout}_{mode}"] = round(memory_in_subprocess(n, mode, layout, shape), 1)
    report["bytes_per_entry"] = memory
    cpu0, wall0 = time.process_time(), time.perf_counter()
    report["ns_per_op_at_max"] = {
        k: round(v) for k, v in asyncio.run(op_costs(sizes[-1], ops)).items()
    }
    report["expiry_at_max"] = asyncio.run(expiry_latency(sizes[-1], ops))
    report["put_latency_growing_then_churning_at_max"] = {
        "one_shard": asyncio.run(growth_latency(sizes[-1], 1)),
        "default_shards": asyncio.run(growth_latency(sizes[-1], None)),
    }
    # This process only, over the latency parts (the memory figures come from their own
    # subprocesses): the store at the largest size, filled several times over.
    report["sizes"] = sizes
    report["ops"] = ops
    report["cpu_pct"] = round(100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0))
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
