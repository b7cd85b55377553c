"""The in-process activation store: OrderedDict shards in expiry order.

Layout, chosen for memory per entry at a million entries:
- key: one string, `user_id + "\\x1f" + experiment code` (a short decimal code interned per
  experiment id), so no tuple and no separate user_id string is kept;
- value: one int, `expiry_ms << 25 | not_sticky << 24 | pair code`, where the pair code
  interns (experiment_id, variation_id), `not_sticky` is the activation's `sticky` flag
  inverted (a forced or whitelisted one), and `expiry_ms` counts milliseconds from the
  store's creation. The flag is one bit of the int already held, not a field of its own:
  no memory per entry, and the lookups that ignore it (attribution) mask and shift by
  constants as before.

The TTL is one constant and every write moves its key to the end, so a dict's order is both
least-recently-activated order and expiry order: expired entries sit at the front and are
popped a few at a time by each call (amortized O(1), never a scan), and eviction at the size
bound pops the front too. (An OrderedDict, not a dict: finding a plain dict's first key
walks over every slot deleted since its last resize, so popping its front is not O(1).)

Entries are spread over shards by key hash, each an OrderedDict of at most about 16k entries
(by default), because growing or compacting one dict of a million entries stops the event
loop for 80-180 ms; a shard's resize costs a few ms. Eviction takes the front of the new
key's shard: least recently activated within the shard, exact with one shard.

`retain` first retires the dropped pair codes, which makes their entries dead at once (a
lookup checks the code), then reclaims them in chunks: a shard's dict is moved aside as
`older` and its entries are moved, newest first, to the front of a fresh dict, the dead ones
skipped, yielding to the event loop between chunks. Meanwhile lookups look in both, writes go
to the fresh dict (removing the key from `older`), and the front of the order is `older`'s.
A retain cancelled part way (a newer datafile's drop supersedes it) leaves `older` for the
next one to finish first.

Beside the shards, a per-user index: a byte per slot of `hash(user_id)`, counting the entries
held (dead ones included) of the users in that slot. A lookup whose user's slot is 0 probes no
shard: TrackStream's fresh traffic, users never activated, costs one hash and one byte read
per event instead of a key built, hashed and looked up per experiment (0.9 us per event with
two experiments). The slots are a power of two, at least twice the entries up to a cap of
64 Mi slots (2 to 4 bytes per entry below it); a count that reaches 255 stays there (the
slot then always probes), so a count is never below the truth. Its price is on writes: a
put that evicts (or reclaims) an entry hashes the user id in and the removed one's out,
0.5 us more (3.0 against 2.5 us).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final

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

_SEP = "\x1f"  # ASCII unit separator; the code after the last one is never ambiguous
_CODE_BITS = 24
_CODE_LIMIT = 1 << _CODE_BITS
_CODE_MASK = _CODE_LIMIT - 1
_NOT_STICKY = _CODE_LIMIT  # the bit above the pair code
_EXPIRY_SHIFT = _CODE_BITS + 1
_SHARD_ENTRIES = 16_384  # a resize of an OrderedDict this size takes a few ms
_MAX_SHARDS = 4096
_SATURATED = 255  # a user slot's count stops here and never goes down again
_MAX_USER_SLOTS = 1 << 26
# Builds a `Held` without the NamedTuple's Python-level __new__ (half the cost).
_new: Final = tuple.__new__


class _Experiment:
    __slots__ = ("codes", "suffix")

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.codes: dict[str, int] = {}  # variation_id -> pair code


class _Shard:
    __slots__ = ("entries", "front_expiry", "older")

    def __init__(self) -> None:
        self.entries: OrderedDict[str, int] = OrderedDict()
        self.older: OrderedDict[str, int] = OrderedDict()  # non-empty only while compacting
        # Expiry of the front entry when last seen: order is expiry order, so nothing at the
        # front can expire before it and a sweep is skipped while now is below it.
        self.front_expiry = 0


def default_shards(max_entries: int) -> int:
    """The power of two that keeps each shard at or under `_SHARD_ENTRIES` entries."""
    wanted = -(-max_entries // _SHARD_ENTRIES)
    return min(_MAX_SHARDS, 1 << (wanted - 1).bit_length())


class MemoryActivationStore:
    """`ActivationStore` in this process's memory, bounded to `max_entries`.

    `clock` returns monotonic seconds (injectable for tests); expiry has millisecond
    resolution. Each call reclaims at most `sweep_budget` dead entries from the front of one
    shard (in turn); `purge_expired` and `retain` work `purge_chunk` entries between yields.
    `shards` (a power of two) defaults to `default_shards(max_entries)`.
    """

    remote = False  # in this process: reads are not worth overlapping

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        sweep_budget: int = 32,
        purge_chunk: int = 4096,
        shards: int | None = None,
    ) -> None:
        check_limits(ttl, max_entries, sweep_budget, purge_chunk)
        if shards is None:
            shards = default_shards(max_entries)
        if shards < 1 or shards & (shards - 1):
            raise ValueError(f"shards must be a power of two, got {shards!r}")
        self._ttl_ms = max(1, round(ttl * 1000))
        self._max_entries = max_entries
        self._clock = clock
        self._epoch = clock()
        self._sweep_budget = sweep_budget
        self._purge_chunk = purge_chunk

        self._shards = [_Shard() for _ in range(shards)]
        self._mask = shards - 1
        self._next_sweep = 0
        self._held = 0  # entries in all shards, dead ones not yet reclaimed included
        self._user_counts = bytearray(_user_slots(max_entries))
        self._user_mask = len(self._user_counts) - 1
        self._compacting = asyncio.Lock()
        self._experiments: dict[str, _Experiment] = {}
        self._next_experiment_code = 0
        self._pairs: list[tuple[str, str] | None] = []  # pair code -> pair; None: retired
        self._counts: list[int] = []  # pair code -> entries held with that code

        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expiries = 0
        self._dropped = 0

    @property
    def ttl(self) -> float:
        return self._ttl_ms / 1000

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def shards(self) -> int:
        return len(self._shards)

    def __len__(self) -> int:
        """Entries physically held, dead ones not yet reclaimed included."""
        return self._held

    # -- the interface ---------------------------------------------------------------------

    async def get(self, user_id: str, experiment_id: str) -> Held | None:
        now = self._now_ms()
        self._sweep_next(now)
        experiment = self._experiments.get(experiment_id)
        if experiment is not None:
            key = user_id + experiment.suffix
            shard = self._shards[hash(key) & self._mask]
            packed = _find(shard, key)
            if packed is not None:
                variation_id = self._live(shard, key, packed, now)
                if variation_id is not None:
                    self._hits += 1
                    return Held(variation_id, not packed & _NOT_STICKY)
        self._misses += 1
        return None

    async def put(
        self, user_id: str, experiment_id: str, variation_id: str, *, sticky: bool = True
    ) -> None:
        now = self._now_ms()
        self._sweep_next(now)
        self._write(user_id, experiment_id, variation_id, now, 0 if sticky else _NOT_STICKY)

    async def put_many(self, user_id: str, entries: Sequence[Write]) -> None:
        # One coroutine for a Decide's feature tests: 25 entries of a new user, 37 us; 49 us
        # as 25 puts.
        if not entries:
            return
        now = self._now_ms()
        sweep_next = self._sweep_next
        write = self._write
        for entry in entries:
            # Swept before each write, as `put` does: the same reclaiming, the same counters.
            sweep_next(now)
            write(
                user_id,
                entry.experiment_id,
                entry.variation_id,
                now,
                0 if entry.sticky else _NOT_STICKY,
            )

    async def refresh_or_put(
        self, user_id: str, experiment_id: str, variation_id: str | None
    ) -> Sticky:
        now = self._now_ms()
        self._sweep_next(now)
        experiment = self._experiments.get(experiment_id)
        if experiment is not None:
            key = user_id + experiment.suffix
            shard = self._shards[hash(key) & self._mask]
            packed = _find(shard, key)
            if packed is not None and not packed & _NOT_STICKY:
                live = self._live(shard, key, packed, now)
                if live is not None:
                    self._hits += 1
                    _store(
                        shard, key, (now + self._ttl_ms) << _EXPIRY_SHIFT | (packed & _CODE_MASK)
                    )
                    return Sticky(live, True)
        self._misses += 1
        if variation_id is None:
            return Sticky(None, False)
        self._write(user_id, experiment_id, variation_id, now, 0)
        return Sticky(variation_id, False)

    async def live_for_user(
        self, user_id: str, experiment_ids: Collection[str] | None = None
    ) -> dict[str, str]:
        now = self._now_ms()
        self._sweep_next(now)
        return self._lookup(((user_id, experiment_ids),), now)[0]

    async def live_for_users(self, lookups: Sequence[Lookup]) -> list[dict[str, str]]:
        now = self._now_ms()
        self._sweep_next(now)
        return self._lookup(lookups, now)

    async def held_for_user(self, user_id: str, experiment_ids: Collection[str]) -> dict[str, Held]:
        # `live_for_user`'s lookup with each live one's sticky bit: a Decide's ~50 feature
        # tests in one call instead of `live_for_user` then a task per live one for `get`.
        # Counted as `live_for_user` counts: one hit or miss.
        now = self._now_ms()
        self._sweep_next(now)
        held: dict[str, Held] = self._lookup(((user_id, experiment_ids),), now, as_held=True)[0]
        return held

    async def retain(self, keep: Keep) -> int:
        async with self._compacting:
            dropped = 0
            for experiment_id, experiment in list(self._experiments.items()):
                for variation_id, code in list(experiment.codes.items()):
                    if not keep(experiment_id, variation_id):
                        del experiment.codes[variation_id]
                        self._pairs[code] = None
                        dropped += self._counts[code]
                if not experiment.codes:
                    # Its entries are all dead; a later put gets a fresh code, so lookups of
                    # every experiment (experiment_ids=None) stop probing this one.
                    del self._experiments[experiment_id]
            self._dropped += dropped
            # A compaction a cancelled retain cut short is finished even when this one drops
            # nothing new: its dead entries would otherwise count against the cap.
            if dropped or any(shard.older for shard in self._shards):
                await self._compact()
            return dropped

    async def purge_expired(self) -> int:
        total = 0
        budget = self._purge_chunk
        for shard in self._shards:
            while True:
                removed = self._sweep(shard, self._now_ms(), budget)
                total += removed
                budget -= removed
                if budget:
                    break  # this shard's front is live, or it is empty
                await asyncio.sleep(0)
                budget = self._purge_chunk
        return total

    async def stats(self) -> ActivationStats:
        held = sum(
            count for count, pair in zip(self._counts, self._pairs, strict=True) if pair is not None
        )
        return ActivationStats(
            entries=held,
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            expiries=self._expiries,
            dropped=self._dropped,
        )

    async def close(self) -> None:
        for shard in self._shards:
            shard.entries.clear()
            shard.older.clear()
        self._held = 0
        self._user_counts = bytearray(len(self._user_counts))
        self._experiments.clear()
        self._pairs.clear()
        self._counts.clear()

    # -- internals -------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int((self._clock() - self._epoch) * 1000)

    def _sweep_next(self, now: int) -> None:
        shard = self._shards[self._next_sweep]
        self._next_sweep = (self._next_sweep + 1) & self._mask
        if now >= shard.front_expiry:
            self._sweep(shard, now, self._sweep_budget)

    def _sweep(self, shard: _Shard, now: int, budget: int) -> int:
        """Pop up to `budget` dead (expired or retired) entries from the shard's front."""
        pairs = self._pairs
        counts = self._counts
        removed = 0
        for held in (shard.older, shard.entries):  # everything in `older` is older
            while held and removed < budget:
                key = next(iter(held))
                packed = held[key]
                code = packed & _CODE_MASK
                if pairs[code] is not None:
                    if packed >> _EXPIRY_SHIFT > now:
                        shard.front_expiry = packed >> _EXPIRY_SHIFT
                        self._held -= removed
                        return removed
                    self._expiries += 1
                del held[key]
                self._user_removed(key)
                counts[code] -= 1
                removed += 1
        self._held -= removed
        return removed

    def _live(self, shard: _Shard, key: str, packed: int, now: int) -> str | None:
        """The variation of a held entry if live; a dead one is removed."""
        code = packed & _CODE_MASK
        pair = self._pairs[code]
        if pair is not None and packed >> _EXPIRY_SHIFT > now:
            return pair[1]
        if pair is not None:
            self._expiries += 1
        if key in shard.entries:
            del shard.entries[key]
        else:
            del shard.older[key]
        self._user_removed(key)
        self._counts[code] -= 1
        self._held -= 1
        return None

    def _lookup(
        self, lookups: Sequence[Lookup], now: int, *, as_held: bool = False
    ) -> list[dict[str, Any]]:
        """`live_for_users`' answer: the live variation ids, or with `as_held` each as a
        `Held` with its sticky bit (`held_for_user`: read here, not looked up again; 25
        feature tests of which 20 live, 37 -> 22 us). `_find` and `_live`'s live case
        inlined: this runs for every event of every TrackStream batch and for the ~50
        feature tests of every Decide, where a method call per experiment costs more than
        the lookup (a Decide's 50 ids for a user with no activation: 25 us with a call per
        id, 19 us inlined)."""
        experiments = self._experiments
        shards = self._shards
        mask = self._mask
        pairs = self._pairs
        user_counts = self._user_counts
        user_mask = self._user_mask
        found_all: list[dict[str, Any]] = []
        hits = 0
        for user_id, experiment_ids in lookups:
            found: dict[str, Any] = {}
            if not user_counts[hash(user_id) & user_mask]:
                found_all.append(found)  # nothing held for this user: no shard to probe
                continue
            for experiment_id in experiments if experiment_ids is None else experiment_ids:
                experiment = experiments.get(experiment_id)
                if experiment is None:
                    continue
                key = user_id + experiment.suffix
                shard = shards[hash(key) & mask]
                packed = shard.entries.get(key)
                if packed is None and shard.older:
                    packed = shard.older.get(key)
                if packed is None:
                    continue
                pair = pairs[packed & _CODE_MASK]
                if pair is not None and packed >> _EXPIRY_SHIFT > now:
                    found[experiment_id] = (
                        _new(Held, (pair[1], not packed & _NOT_STICKY)) if as_held else pair[1]
                    )
                else:
                    self._live(shard, key, packed, now)  # dead: removes it
            hits += bool(found)
            found_all.append(found)
        self._hits += hits
        self._misses += len(found_all) - hits
        return found_all

    def _write(
        self, user_id: str, experiment_id: str, variation_id: str, now: int, not_sticky: int
    ) -> None:
        experiment = self._experiments.get(experiment_id)
        if experiment is None:
            experiment = _Experiment(f"{_SEP}{self._next_experiment_code}")
            self._next_experiment_code += 1
            self._experiments[experiment_id] = experiment
        code = experiment.codes.get(variation_id)
        if code is None:
            code = self._new_code(experiment_id, variation_id)
            experiment.codes[variation_id] = code
        key = user_id + experiment.suffix
        shard = self._shards[hash(key) & self._mask]
        packed = (now + self._ttl_ms) << _EXPIRY_SHIFT | not_sticky | code
        old = _find(shard, key)
        if old is None:
            if self._held >= self._max_entries:
                self._evict_one(shard, now)
            shard.entries[key] = packed
            self._held += 1
            counts = self._user_counts
            slot = hash(user_id) & self._user_mask
            count = counts[slot]
            if count < _SATURATED:
                counts[slot] = count + 1
        else:
            old_code = old & _CODE_MASK
            if self._pairs[old_code] is not None and old >> _EXPIRY_SHIFT <= now:
                self._expiries += 1
            self._counts[old_code] -= 1
            _store(shard, key, packed)
        self._counts[code] += 1

    def _evict_one(self, shard: _Shard, now: int) -> None:
        """Remove the front of `shard`, or of the next shard holding anything."""
        index = self._next_sweep
        while not (shard.older or shard.entries):  # some shard holds something: held >= 1
            shard = self._shards[index]
            index = (index + 1) & self._mask
        key, packed = (shard.older or shard.entries).popitem(last=False)
        self._user_removed(key)
        code = packed & _CODE_MASK
        self._counts[code] -= 1
        self._held -= 1
        if self._pairs[code] is None:
            return
        if packed >> _EXPIRY_SHIFT <= now:
            self._expiries += 1
        else:
            self._evictions += 1

    async def _compact(self) -> None:
        """Reclaim retired entries in chunks (see the module docstring)."""
        work = 0
        for shard in self._shards:
            if shard.older:
                # A compaction cancelled part way (a newer datafile superseded its drop) left
                # `older` to finish: moving `entries` aside over it would lose it.
                work = await self._move_older(shard, work)
            shard.older, shard.entries = shard.entries, OrderedDict()
            work = await self._move_older(shard, work)

    async def _move_older(self, shard: _Shard, work: int) -> int:
        """Moves the shard's `older` entries to the front of `entries`, dropping the retired
        ones, yielding every `purge_chunk` entries; returns the work since the last yield."""
        pairs = self._pairs
        counts = self._counts
        older, entries = shard.older, shard.entries
        while older:
            moves = min(self._purge_chunk - work, len(older))
            for _ in range(moves):
                key, packed = older.popitem()  # the newest of `older` goes first ...
                code = packed & _CODE_MASK
                if pairs[code] is None:
                    self._user_removed(key)
                    counts[code] -= 1
                    self._held -= 1
                else:
                    entries[key] = packed
                    entries.move_to_end(key, last=False)  # ... to the front of `entries`
            work += moves
            if work >= self._purge_chunk:
                await asyncio.sleep(0)
                work = 0
        return work

    def _user_removed(self, key: str) -> None:
        """Counts out the entry `key`, just removed, from its user's slot."""
        counts = self._user_counts
        slot = hash(key.rpartition(_SEP)[0]) & self._user_mask  # faster than rindex and a slice
        count = counts[slot]
        if count < _SATURATED:
            counts[slot] = count - 1

    def _new_code(self, experiment_id: str, variation_id: str) -> int:
        pair = (experiment_id, variation_id)
        if len(self._pairs) < _CODE_LIMIT:
            self._pairs.append(pair)
            self._counts.append(0)
            return len(self._pairs) - 1
        # Sixteen million pairs ever seen: reuse a retired code no entry holds any more.
        for code, (held, old) in enumerate(zip(self._counts, self._pairs, strict=True)):
            if old is None and held == 0:
                self._pairs[code] = pair
                return code
        raise RuntimeError("activation store: no free (experiment, variation) code")


def _user_slots(max_entries: int) -> int:
    """The per-user index's size: the power of two at or above twice `max_entries`."""
    return min(_MAX_USER_SLOTS, 1 << (2 * max_entries - 1).bit_length())


def _find(shard: _Shard, key: str) -> int | None:
    packed = shard.entries.get(key)
    if packed is None and shard.older:
        packed = shard.older.get(key)
    return packed


def _store(shard: _Shard, key: str, packed: int) -> None:
    """Write an entry known to be held in `shard`, making it the most recent."""
    entries = shard.entries
    if key in entries:
        entries[key] = packed
        entries.move_to_end(key)
    else:
        del shard.older[key]
        entries[key] = packed
