"""Overrides in a host-local LMDB environment, shared by every worker process of one host
(`--activation-store local`, the default of `--workers N`), as the activation store is.

Its own environment (a directory beside the activations'), two databases, one per kind, so
each kind's bound is LMDB's own exact count:
- `variations`, `decisions`: key = 16-byte digest of the user id + 8-byte digest of the field
  (fixed size: ids may be longer than LMDB's 511-byte key limit; a user's overrides are one
  range, what `for_user` reads in one read transaction); value = expiry (ms, wall clock,
  shared by every process), the field's length, the field, then the value. The field is the
  experiment id, or the flag key, a rule flag and the rule key.
Expired entries are deleted when their user is written, and all at once only when a kind is
full (setting overrides is rare; the scan is paid then).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from hashlib import blake2b
from pathlib import Path
from typing import Final

import lmdb

from trackd.activation.store import check_limits
from trackd.errors import ResourceExhausted
from trackd.lmdb_files import USER_BYTES, open_env, user_key
from trackd.overrides.store import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_SECONDS,
    NO_OVERRIDES,
    UserOverrides,
    check_decision,
    check_variation,
    decision_context,
    decision_field,
)

_HEADER: Final = struct.Struct(">qI")  # expiry_ms, length of the field
_MAP_BYTES: Final = 256 << 20  # address space, sparse on disk: 100k of each kind fit easily


class LocalOverrideStore:
    """`OverrideStore` in an LMDB environment at `path` (a directory, created if missing).

    `clock` returns wall-clock seconds: every process must read the same one.
    """

    remote = False

    def __init__(
        self,
        path: Path,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_limits(ttl, max_entries)
        self._ttl_ms = max(1, round(ttl * 1000))
        self._max_entries = max_entries
        self._clock = clock
        self._env, (self._variations, self._decisions) = open_env(
            path,
            "override store",
            "overrides",
            (b"variations", b"decisions"),
            map_size=_MAP_BYTES,
            sync=False,
            metasync=False,
        )

    @property
    def ttl(self) -> float:
        return self._ttl_ms / 1000

    async def set_variation(self, user_id: str, experiment_id: str, variation_id: str) -> None:
        check_variation(experiment_id, variation_id)
        self._put(self._variations, "forced variations", user_id, experiment_id, variation_id)

    async def get_variation(self, user_id: str, experiment_id: str) -> str | None:
        return self._read(self._variations, user_id, experiment_id)

    async def remove_variation(self, user_id: str, experiment_id: str) -> bool:
        return self._delete(self._variations, user_id, experiment_id)

    async def set_decision(
        self, user_id: str, flag_key: str, rule_key: str | None, variation_key: str
    ) -> None:
        check_decision(flag_key, variation_key)
        field = decision_field(flag_key, rule_key)
        self._put(self._decisions, "forced decisions", user_id, field, variation_key)

    async def get_decision(self, user_id: str, flag_key: str, rule_key: str | None) -> str | None:
        return self._read(self._decisions, user_id, decision_field(flag_key, rule_key))

    async def remove_decision(self, user_id: str, flag_key: str, rule_key: str | None) -> bool:
        return self._delete(self._decisions, user_id, decision_field(flag_key, rule_key))

    async def remove_all_decisions(self, user_id: str) -> int:
        user = user_key(user_id)
        now = self._now_ms()
        removed = 0
        with self._env.begin(write=True, db=self._decisions) as txn:
            cursor = txn.cursor()
            if cursor.set_range(user):
                while cursor.key()[:USER_BYTES] == user:
                    if _expiry(cursor.value()) > now:
                        removed += 1
                    if not _delete_and_next(cursor):
                        break
        return removed

    async def for_user(self, user_id: str) -> UserOverrides:
        user = user_key(user_id)
        now = self._now_ms()
        with self._env.begin() as txn:
            variations = dict(_live_range(txn.cursor(self._variations), user, now))
            decisions = {
                decision_context(field): value
                for field, value in _live_range(txn.cursor(self._decisions), user, now)
            }
        if not variations and not decisions:
            return NO_OVERRIDES
        return UserOverrides(variations, decisions)

    async def close(self) -> None:
        self._env.close()

    # -- internals -------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _put(self, db: lmdb._Database, what: str, user_id: str, field: str, value: str) -> None:
        key = _key(user_id, field)
        now = self._now_ms()
        encoded = field.encode()
        stored = _HEADER.pack(now + self._ttl_ms, len(encoded)) + encoded + value.encode()
        with self._env.begin(write=True, db=db) as txn:
            held = txn.get(key)
            if held is None or _expiry(held) <= now:
                if txn.stat(db)["entries"] - (held is not None) >= self._max_entries:
                    _delete_expired(txn.cursor(), now)
                if txn.stat(db)["entries"] - (txn.get(key) is not None) >= self._max_entries:
                    raise ResourceExhausted(
                        f"{what} are full ({self._max_entries}); remove some first"
                    )
            txn.put(key, stored)

    def _read(self, db: lmdb._Database, user_id: str, field: str) -> str | None:
        with self._env.begin(db=db) as txn:
            held = txn.get(_key(user_id, field))
            if held is None or _expiry(held) <= self._now_ms():
                return None
            return _decoded(held)[1]

    def _delete(self, db: lmdb._Database, user_id: str, field: str) -> bool:
        with self._env.begin(write=True, db=db) as txn:
            key = _key(user_id, field)
            held = txn.get(key)
            if held is None:
                return False
            txn.delete(key)
            return _expiry(held) > self._now_ms()


def _key(user_id: str, field: str) -> bytes:
    return user_key(user_id) + blake2b(field.encode(), digest_size=8).digest()


def _expiry(value: bytes | memoryview) -> int:
    expiry: int = _HEADER.unpack_from(value)[0]
    return expiry


def _decoded(value: bytes | memoryview) -> tuple[str, str]:
    _, length = _HEADER.unpack_from(value)
    start = _HEADER.size
    return bytes(value[start : start + length]).decode(), bytes(value[start + length :]).decode()


def _delete_and_next(cursor: lmdb.Cursor) -> bool:
    """Deletes the cursor's entry and moves to the next; False past the last (LMDB leaves
    the cursor on an empty key there, and still says True)."""
    cursor.delete()
    return bool(cursor.key())


def _live_range(cursor: lmdb.Cursor, user: bytes, now: int) -> Iterator[tuple[str, str]]:
    """(field, value) of the user's live entries in the cursor's database."""
    if not cursor.set_range(user):
        return
    for key, value in cursor:
        if key[:USER_BYTES] != user:
            return
        if _expiry(value) > now:
            yield _decoded(value)


def _delete_expired(cursor: lmdb.Cursor, now: int) -> None:
    if not cursor.first():
        return
    while True:
        if _expiry(cursor.value()) <= now:
            if not _delete_and_next(cursor):
                return
        elif not cursor.next():
            return
