"""The host-local shared activation store: LMDB, so every worker process of one host sees the
same activations without Redis (`--activation-store local`, the default of `--workers N`).

LMDB is a memory-mapped B+tree made for many processes: readers never lock (each reads a
snapshot), writers take one lock in the environment's lock file, held only for a write
transaction. Every call here is one transaction (`refresh_or_put` without a candidate: a read,
then a write only when something sticky is live), run inline: they take microseconds, less
than a hand-off to a thread would cost. CPU per call measured here (2 busy cores, 20,000
users), the memory store's against this one's: a new user's Activate (a miss, then `put`)
4 vs 19 us, a sticky user's refresh 3 vs 22 us, Track's `live_for_user` 2 vs 7 us; the
whole Activate RPC costs the daemon about 500 us.

Layout, three databases in one environment (a directory):
- `acts`: key = 16-byte digest of the user id + 8-byte digest of the experiment id (fixed
  size: a user id may be longer than LMDB's 511-byte key limit, and a user's activations are
  one range, for Track's "every experiment" lookup); value = expiry (ms, wall clock, shared by
  every process and kept across restarts), the write's sequence number, the sticky flag, then
  `experiment_id \\x1f variation_id` (so a digest collision reads as a miss, never as another
  experiment's variation).
- `order`: key = sequence number (8 bytes, big-endian), value = the `acts` key. Every write
  takes the next number (one past the last key, inside the write transaction, which is
  serialized across processes) and drops its old one, so `order`'s front is the least
  recently activated entry in the whole host, exactly, whichever process wrote it. The TTL is
  one constant, so it is also expiry order: expired entries sit at the front, and each write
  reclaims a few from there (`sweep_budget`); eviction at `max_entries` takes the front too.
- `pairs`: every (experiment, variation) pair written, so `retain` after a datafile change
  asks `keep` about each pair and scans `acts` only when one is dropped (every worker runs
  `retain` on its own reload: all but the first find nothing to drop).

`stats().entries` is LMDB's own count of `acts` (shared, exact); hits, misses, evictions,
expiries and dropped are this process's, as with Redis: each worker exports its own.

The map (`map_size`) is address space reserved up front; the file has the map's size but is
sparse: only the pages used take disk space.
The default allows `_MAP_BYTES_PER_ENTRY` per activation, several times what one takes.
A write that finds it full anyway (very long variation ids, readers pinning old pages) raises
`ActivationStoreFull`, an `ActivationStoreUnavailable`: the call degrades as with Redis down.

Commits are not fsynced (`sync=False`): activations are a cache, and a crash of a process
loses nothing (the pages are in the OS's cache). A power loss or an OS crash can leave the
file damaged: delete the directory (`DATA_DIR/activations`) and the store starts empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from hashlib import blake2b
from pathlib import Path
from typing import Final, NamedTuple

import lmdb
import structlog

from trackd.activation.store import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_SECONDS,
    ActivationStats,
    Held,
    Keep,
    Lookup,
    Sticky,
    Write,
    check_limits,
)
from trackd.errors import ActivationStoreFull
from trackd.lmdb_files import USER_BYTES, open_env, user_key

log = structlog.get_logger("trackd.activation")

_SEP: Final = b"\x1f"
_HEADER: Final = struct.Struct(">qQ?")  # expiry_ms, sequence, sticky
_SEQ: Final = struct.Struct(">Q")
_MIN_MAP_BYTES: Final = 64 << 20
_MAP_BYTES_PER_ENTRY: Final = 2048  # an activation takes about 200 bytes in both trees


def default_map_size(max_entries: int) -> int:
    return max(_MIN_MAP_BYTES, max_entries * _MAP_BYTES_PER_ENTRY)


class LocalActivationStore:
    """`ActivationStore` in an LMDB environment at `path` (a directory, created if missing),
    shared by every process of this host that opens the same path with the same `ttl`.

    `clock` returns wall-clock seconds (injectable for tests): every process must read the
    same one. Each write reclaims at most `sweep_budget` expired entries from the front;
    `purge_expired` and `retain` work `purge_chunk` entries per write transaction, yielding
    to the event loop between them.
    """

    remote = False  # a memory-mapped file: a read costs microseconds, not a round trip

    def __init__(
        self,
        path: Path,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        map_size: int | None = None,
        clock: Callable[[], float] = time.time,
        sweep_budget: int = 8,
        purge_chunk: int = 4096,
    ) -> None:
        check_limits(ttl, max_entries, sweep_budget, purge_chunk)
        self._path = path
        self._ttl_ms = max(1, round(ttl * 1000))
        self._max_entries = max_entries
        self._clock = clock
        self._sweep_budget = sweep_budget
        self._purge_chunk = purge_chunk
        self._env, (self._acts, self._order, self._pairs) = open_env(
            path,
            "activation store",
            "activations",
            (b"acts", b"order", b"pairs"),
            map_size=map_size or default_map_size(max_entries),
            sync=False,  # a cache: see the module docstring
            metasync=False,
            # Commits write pages in place instead of copying them with pwrite: a sticky
            # refresh took 21 us of CPU instead of 30, and two processes refreshing at
            # once 25 us each instead of 42-51, the write lock held that much shorter
            # (2 busy cores). The file's size is then the map's, sparse: `du` shows what
            # is used.
            writemap=True,
            readahead=False,  # random access: reading ahead only evicts useful pages
            max_spare_txns=4,
        )
        self._experiments: dict[str, bytes] = {}  # experiment id -> its 8-byte digest
        # The front's expiry when last seen: the front only ever gets later (entries leave
        # it or move to the back), so no write need look before then.
        self._front_expiry = 0
        self._full = False  # the last write found the map full (stats: not available)
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expiries = 0
        self._dropped = 0

    @property
    def path(self) -> Path:
        return self._path

    @property
    def ttl(self) -> float:
        return self._ttl_ms / 1000

    @property
    def max_entries(self) -> int:
        return self._max_entries

    # -- the interface ---------------------------------------------------------------------

    async def get(self, user_id: str, experiment_id: str) -> Held | None:
        now = self._now_ms()
        with self._env.begin() as txn:
            held = self._live_in(txn, user_key(user_id), experiment_id, now)
        if held is None:
            self._misses += 1
            return None
        self._hits += 1
        return Held(held.variation_id, held.sticky)

    async def put(
        self, user_id: str, experiment_id: str, variation_id: str, *, sticky: bool = True
    ) -> None:
        user = user_key(user_id)
        with self._writing() as txn:
            now = self._now_ms()
            self._sweep(txn, now)
            self._write(txn, user, experiment_id, variation_id, sticky, now)

    async def put_many(self, user_id: str, entries: Sequence[Write]) -> None:
        if not entries:
            return
        user = user_key(user_id)
        with self._writing() as txn:
            now = self._now_ms()
            self._sweep(txn, now)
            for entry in entries:
                self._write(txn, user, entry.experiment_id, entry.variation_id, entry.sticky, now)

    async def refresh_or_put(
        self, user_id: str, experiment_id: str, variation_id: str | None
    ) -> Sticky:
        user = user_key(user_id)
        if variation_id is None:
            # Activate's question for every user: nothing sticky live means nothing to write,
            # so most new users never take the host's write lock for it.
            now = self._now_ms()
            with self._env.begin() as txn:
                held = _decoded(txn.get(self._key(user, experiment_id), db=self._acts))
            if held is None or not held.sticky or held.expiry <= now:
                self._misses += 1
                return Sticky(None, False)
        with self._writing() as txn:
            now = self._now_ms()
            self._sweep(txn, now)
            held = _decoded(txn.get(self._key(user, experiment_id), db=self._acts))
            if (
                held is not None
                and held.sticky
                and held.expiry > now
                and held.experiment_id == experiment_id
            ):
                self._hits += 1
                self._write(txn, user, experiment_id, held.variation_id, True, now)
                return Sticky(held.variation_id, True)
            self._misses += 1
            if variation_id is None:
                return Sticky(None, False)
            self._write(txn, user, experiment_id, variation_id, True, now)
            return Sticky(variation_id, False)

    async def live_for_user(
        self, user_id: str, experiment_ids: Collection[str] | None = None
    ) -> dict[str, str]:
        return (await self.live_for_users(((user_id, experiment_ids),)))[0]

    async def live_for_users(self, lookups: Sequence[Lookup]) -> list[dict[str, str]]:
        now = self._now_ms()
        found_all: list[dict[str, str]] = []
        with self._env.begin() as txn:
            for user_id, experiment_ids in lookups:
                user = user_key(user_id)
                found: dict[str, str] = {}
                if experiment_ids is None:
                    for value in self._user_values(txn, user):
                        held = _decoded(value)
                        if held is not None and held.expiry > now:
                            found[held.experiment_id] = held.variation_id
                else:
                    for experiment_id in experiment_ids:
                        held = self._live_in(txn, user, experiment_id, now)
                        if held is not None:
                            found[experiment_id] = held.variation_id
                found_all.append(found)
        hits = sum(1 for found in found_all if found)
        self._hits += hits
        self._misses += len(found_all) - hits
        return found_all

    async def held_for_user(self, user_id: str, experiment_ids: Collection[str]) -> dict[str, Held]:
        now = self._now_ms()
        user = user_key(user_id)
        found: dict[str, Held] = {}
        with self._env.begin() as txn:
            for experiment_id in experiment_ids:
                held = self._live_in(txn, user, experiment_id, now)
                if held is not None:
                    found[experiment_id] = Held(held.variation_id, held.sticky)
        if found:
            self._hits += 1
        else:
            self._misses += 1
        return found

    def _live_in(
        self, txn: lmdb.Transaction[bytes], user: bytes, experiment_id: str, now: int
    ) -> _Stored | None:
        """The user's live activation in the experiment as `txn` reads it; None when there is
        none, it expired, or its key is another experiment's (an 8-byte digest collision)."""
        held = _decoded(txn.get(self._key(user, experiment_id), db=self._acts))
        if held is None or held.expiry <= now or held.experiment_id != experiment_id:
            return None
        return held

    async def retain(self, keep: Keep) -> int:
        with self._env.begin() as txn:
            pairs = [bytes(pair) for pair, _ in txn.cursor(db=self._pairs)]
        dropped_pairs = set()
        for pair in pairs:
            experiment_id, _, variation_id = pair.decode().partition("\x1f")
            if not keep(experiment_id, variation_id):
                dropped_pairs.add(pair)
        if not dropped_pairs:
            return 0
        removed = 0
        after = b""  # the `acts` key to resume from
        while True:
            with self._writing() as txn:
                cursor = txn.cursor(db=self._acts)
                seen = 0
                more = cursor.set_range(after)
                while more and seen < self._purge_chunk:
                    value = cursor.value()
                    seen += 1
                    if value[_HEADER.size :] in dropped_pairs:
                        txn.delete(value[8:16], db=self._order)
                        more = _delete_and_next(cursor)
                        removed += 1
                    else:
                        more = cursor.next()
                after = cursor.key() if more else b""
                if not more:
                    for pair in dropped_pairs:
                        txn.delete(pair, db=self._pairs)
            if not after:
                break
            await asyncio.sleep(0)
        self._dropped += removed
        log.info("store_pairs_dropped", pairs=len(dropped_pairs), activations=removed)
        return removed

    async def purge_expired(self) -> int:
        total = 0
        if self._now_ms() < self._front_expiry:
            return 0  # nothing at the front has expired: no need for the write lock
        while True:
            with self._writing() as txn:
                removed = self._sweep(txn, self._now_ms(), self._purge_chunk)
            total += removed
            if removed < self._purge_chunk:
                return total
            await asyncio.sleep(0)

    async def stats(self) -> ActivationStats:
        with self._env.begin() as txn:
            entries = txn.stat(self._acts)["entries"]
        return ActivationStats(
            entries=entries,
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            expiries=self._expiries,
            dropped=self._dropped,
            available=not self._full,
        )

    async def close(self) -> None:
        self._env.close()

    # -- internals -------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[lmdb.Transaction[bytes]]:
        """A write transaction, committed when the block ends without an error; a full map
        aborts it and becomes `ActivationStoreFull`."""
        try:
            with self._env.begin(write=True) as txn:
                yield txn
        except BaseException as error:
            # An aborted sweep may have seen a front that is no longer there: look again.
            self._front_expiry = 0
            if not isinstance(error, lmdb.MapFullError):
                raise
            if not self._full:  # one line when it fills, not one per refused write
                log.warning("activation_store_full", path=str(self._path), error=str(error))
            self._full = True
            raise ActivationStoreFull(
                f"the activation store ({self._path}) is full: its map of"
                f" {self._env.info()['map_size']} bytes holds no more; lower"
                " --activation-cache-size or delete the directory while trackd is stopped"
            ) from error
        self._full = False

    def _key(self, user: bytes, experiment_id: str) -> bytes:
        digest = self._experiments.get(experiment_id)
        if digest is None:
            digest = blake2b(experiment_id.encode(), digest_size=8).digest()
            self._experiments[experiment_id] = digest
        return user + digest

    def _user_values(self, txn: lmdb.Transaction[bytes], user: bytes) -> Iterator[bytes]:
        """The stored values of a user's activations (one key range)."""
        cursor = txn.cursor(db=self._acts)
        more = cursor.set_range(user)
        while more:
            key, value = cursor.item()
            if key[:USER_BYTES] != user:
                return
            yield value
            more = cursor.next()

    def _write(
        self,
        txn: lmdb.Transaction[bytes],
        user: bytes,
        experiment_id: str,
        variation_id: str,
        sticky: bool,
        now: int,
    ) -> None:
        key = self._key(user, experiment_id)
        old = txn.get(key, db=self._acts)
        if old is not None:
            if _HEADER.unpack_from(old)[0] <= now:
                self._expiries += 1
            txn.delete(old[8:16], db=self._order)
        elif txn.stat(self._acts)["entries"] >= self._max_entries:
            self._evict_one(txn, now)
        with txn.cursor(db=self._order) as cursor:
            sequence = _SEQ.unpack(cursor.key())[0] + 1 if cursor.last() else 1
        pair = experiment_id.encode() + _SEP + variation_id.encode()
        txn.put(key, _HEADER.pack(now + self._ttl_ms, sequence, sticky) + pair, db=self._acts)
        txn.put(_SEQ.pack(sequence), key, db=self._order, append=True)
        if txn.get(pair, db=self._pairs) is None:
            txn.put(pair, b"", db=self._pairs)

    def _evict_one(self, txn: lmdb.Transaction[bytes], now: int) -> None:
        """Removes the least recently activated entry (the front of `order`)."""
        with txn.cursor(db=self._order) as cursor:
            if not cursor.first():
                return
            key = cursor.value()
            cursor.delete()
        value = txn.pop(key, db=self._acts)
        if value is not None and _HEADER.unpack_from(value)[0] <= now:
            self._expiries += 1
        else:
            self._evictions += 1

    def _sweep(self, txn: lmdb.Transaction[bytes], now: int, budget: int | None = None) -> int:
        """Removes up to `budget` (default `sweep_budget`) expired entries from the front."""
        if now < self._front_expiry:
            return 0
        budget = budget or self._sweep_budget
        removed = 0
        with txn.cursor(db=self._order) as cursor:
            more = cursor.first()
            while more and removed < budget:
                key = cursor.value()
                value = txn.get(key, db=self._acts)
                if value is not None:
                    expiry = _HEADER.unpack_from(value)[0]
                    if expiry > now:
                        self._front_expiry = expiry
                        break
                    txn.delete(key, db=self._acts)
                    self._expiries += 1
                    removed += 1
                more = _delete_and_next(cursor)
        return removed


class _Stored(NamedTuple):
    """A stored activation, decoded; live or not (callers compare `expiry` with now)."""

    expiry: int
    sticky: bool
    experiment_id: str
    variation_id: str


def _decoded(value: bytes | None) -> _Stored | None:
    """A stored value decoded; None for none."""
    if value is None:
        return None
    expiry, _, sticky = _HEADER.unpack_from(value)
    experiment_id, _, variation_id = value[_HEADER.size :].decode().partition("\x1f")
    return _Stored(expiry, sticky, experiment_id, variation_id)


def _delete_and_next(cursor: lmdb.Cursor) -> bool:
    """Deletes the cursor's entry and moves to the next; False past the last (LMDB leaves
    the cursor on an empty key there, and still says True)."""
    cursor.delete()
    return bool(cursor.key())


__all__ = ["LocalActivationStore", "default_map_size"]
