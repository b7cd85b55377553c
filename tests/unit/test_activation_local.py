"""What only the host-local (LMDB) store does: one LRU order and one count for every process
of the host, its map filling up as a clear error, user ids longer than LMDB's key limit.
The behaviours every store shares are in test_activation_contract.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trackd.activation import Held, Sticky
from trackd.activation.local import LocalActivationStore
from trackd.errors import ActivationStoreFull, ActivationStoreUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def in_another_process(path: Path, body: str) -> None:
    """Runs `body` (awaiting on `store`, a LocalActivationStore at `path` with a TTL of 60 s
    and a bound of 2) in a fresh Python process, as another worker would."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from trackd.activation.local import LocalActivationStore

        async def main() -> None:
            store = LocalActivationStore(Path(sys.argv[1]), ttl=60.0, max_entries=2)
        {body}
            await store.close()

        asyncio.run(main())
        """
    ).format(body=textwrap.indent(textwrap.dedent(body), "    "))
    assert run_python(script, path) == 0


def run_python(script: str, path: Path) -> int:
    """`script` run by a fresh Python process with `path` as its argument; its exit code."""
    return subprocess.run([sys.executable, "-c", script, str(path)], timeout=60).returncode


async def test_the_least_recently_activated_is_evicted(tmp_path: Path) -> None:
    store = LocalActivationStore(tmp_path, ttl=60.0, max_entries=3)
    for user_id in ("u1", "u2", "u3"):
        await store.put(user_id, "e1", "v1")
    assert await store.refresh_or_put("u1", "e1", None) == Sticky("v1", True)  # u2 is oldest
    await store.put("u4", "e1", "v1")
    assert await store.get("u2", "e1") is None
    assert [await store.get(u, "e1") for u in ("u1", "u3", "u4")] == [Held("v1", True)] * 3
    stats = await store.stats()
    assert (stats.entries, stats.evictions) == (3, 1)
    await store.close()


async def test_activations_expire_after_the_ttl_and_are_reclaimed(tmp_path: Path) -> None:
    clock = Clock()
    store = LocalActivationStore(tmp_path, ttl=10.0, clock=clock)
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v1")
    clock.now += 5
    assert await store.refresh_or_put("u2", "e1", None) == Sticky("v1", True)  # to now + 10
    clock.now += 6
    assert await store.get("u1", "e1") is None
    assert await store.live_for_user("u2") == {"e1": "v1"}
    assert await store.purge_expired() == 1
    stats = await store.stats()
    assert (stats.entries, stats.expiries) == (1, 1)
    await store.close()


async def test_processes_share_activations_one_lru_order_and_one_count(tmp_path: Path) -> None:
    store = LocalActivationStore(tmp_path, ttl=60.0, max_entries=2)
    await store.put("here", "e1", "v1")
    in_another_process(tmp_path, 'await store.put("there", "e1", "v2")')
    assert await store.get("there", "e1") == Held("v2", True)
    # The oldest write in the host is this process's "here": the other process's next new
    # activation evicts it, not its own "there".
    in_another_process(
        tmp_path,
        """
        assert await store.refresh_or_put("late", "e1", "v3") == (("v3", False))
        assert await store.get("here", "e1") is None
        """,
    )
    assert await store.get("here", "e1") is None
    assert await store.live_for_users([("there", None), ("late", None)]) == [
        {"e1": "v2"},
        {"e1": "v3"},
    ]
    assert (await store.stats()).entries == 2
    await store.close()


async def test_a_full_map_is_a_clear_error_and_reads_go_on(tmp_path: Path) -> None:
    store = LocalActivationStore(tmp_path, ttl=60.0, max_entries=10**9, map_size=256 << 10)
    await store.put("u0", "e1", "v1")
    with pytest.raises(ActivationStoreFull, match="is full") as raised:
        for n in range(1, 100_000):
            await store.put(f"u{n}", "e1", "v" * 200)
    assert isinstance(raised.value, ActivationStoreUnavailable)  # the tracker degrades on it
    assert await store.get("u0", "e1") == Held("v1", True)
    assert not (await store.stats()).available  # trackd_activation_store_up 0
    await store.close()


async def test_user_ids_longer_than_an_lmdb_key_are_kept_apart(tmp_path: Path) -> None:
    store = LocalActivationStore(tmp_path, ttl=60.0)
    long_a, long_b = "a" * 4000, "a" * 3999 + "b"
    await store.put(long_a, "e1", "v1")
    await store.put(long_b, "e1", "v2", sticky=False)
    assert await store.get(long_a, "e1") == Held("v1", True)
    assert await store.live_for_user(long_b) == {"e1": "v2"}
    await store.close()


async def test_activations_outlive_a_restart(tmp_path: Path) -> None:
    """The store is a directory: a restarted worker finds what the others left."""
    store = LocalActivationStore(tmp_path, ttl=60.0)
    await store.put("u1", "e1", "v1")
    await store.close()
    reopened = LocalActivationStore(tmp_path, ttl=60.0)
    assert await reopened.get("u1", "e1") == Held("v1", True)
    await reopened.close()


async def test_a_damaged_store_is_a_start_up_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "data.mdb").write_bytes(b"not an LMDB file" * 512)
    with pytest.raises(OSError, match=f"cannot open the activation store {tmp_path}: .*delete"):
        LocalActivationStore(tmp_path)


async def test_retain_and_purge_work_through_many_chunks(tmp_path: Path) -> None:
    clock = Clock()
    store = LocalActivationStore(tmp_path, ttl=10.0, clock=clock, purge_chunk=3)
    for n in range(10):
        await store.put(f"u{n}", "e1", "gone" if n % 2 else "kept")
        await store.put(f"u{n}", "e2", "v2")
    assert await store.retain(lambda _, variation_id: variation_id != "gone") == 5
    assert await store.live_for_users([(f"u{n}", ["e1"]) for n in range(10)]) == [
        {} if n % 2 else {"e1": "kept"} for n in range(10)
    ]
    assert (await store.stats()).entries == 15
    clock.now += 11
    assert await store.purge_expired() == 15
    assert (await store.stats()).entries == 0
    await store.close()


async def test_a_worker_killed_while_writing_does_not_hold_the_others(tmp_path: Path) -> None:
    """SIGKILL inside a write transaction: LMDB's lock is a robust mutex, so the next writer
    takes it at once, and the dead worker's write is as if never begun."""
    store = LocalActivationStore(tmp_path, ttl=60.0)
    await store.put("u0", "e1", "v0")
    killed = textwrap.dedent(
        """
        import os, signal, sys
        import lmdb
        env = lmdb.open(sys.argv[1], max_dbs=3, writemap=True)
        txn = env.begin(write=True)
        txn.put(b"x" * 24, b"half-written", db=env.open_db(b"acts", txn=txn))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert run_python(killed, tmp_path) == -signal.SIGKILL
    await store.put("u1", "e1", "v1")  # would wait forever on a lock that is not robust
    assert await store.live_for_users([("u0", None), ("u1", None)]) == [{"e1": "v0"}, {"e1": "v1"}]
    assert (await store.stats()).entries == 2
    await store.close()
