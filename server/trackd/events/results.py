"""Experiment results counted from committed outbox rows, exactly once.

The outbox writer thread feeds committed rows (in id order) to `Counter.consume`, which
updates the results tables in the same transaction that moves the persisted cursor: a
crash keeps both or neither, so nothing is lost or counted twice. A group is one
variation's visitors or one (variation, event)'s converters; its unique users are rows
of `results_members` (keyed by a small group id), and its counters grow by the rows those
inserts really added, so a results query reads a handful of rows however many users.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import structlog

from trackd.events.records import (
    COLUMNS_FORMAT,
    DECISIONS,
    IMPRESSION,
    ROW_FORMAT,
    RULE_TYPE_EXPERIMENT,
    RULE_TYPE_FEATURE_TEST,
    Conversion,
    CountedConversion,
    DecisionEvents,
    Impression,
    attributed_columns,
    decode_unexpanded,
    event_count,
)

log = structlog.get_logger("trackd.events")

_INT64_MAX: Final = 2**63 - 1

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS results_groups (
    id INTEGER PRIMARY KEY,
    experiment_id TEXT NOT NULL,
    variation_id TEXT NOT NULL,
    kind INTEGER NOT NULL,            -- 0: the variation's visitors; 1: one event's converters
    event_key TEXT NOT NULL,          -- '' for visitors
    users INTEGER NOT NULL DEFAULT 0, -- unique visitors or converters
    conversions INTEGER NOT NULL DEFAULT 0,
    revenue INTEGER NOT NULL DEFAULT 0,
    value REAL NOT NULL DEFAULT 0.0,
    UNIQUE (experiment_id, variation_id, kind, event_key)
);
CREATE TABLE IF NOT EXISTS results_members (
    group_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
"""

_VISITORS: Final = 0
_CONVERTERS: Final = 1


@dataclass(frozen=True, slots=True)
class EventResults:
    event_key: str
    converters: int  # unique users
    conversions: int  # all conversions, repeats included
    revenue: int
    value: float


@dataclass(frozen=True, slots=True)
class VariationResults:
    variation_key: str
    variation_id: str
    visitors: int  # unique activated users
    events: tuple[EventResults, ...]


@dataclass(frozen=True, slots=True)
class ExperimentResults:
    experiment_key: str
    experiment_id: str
    variations: tuple[VariationResults, ...]


@dataclass(frozen=True, slots=True)
class RawCounts:
    """What the tables hold for one experiment, keyed by ids and event keys."""

    visitors: Mapping[str, int]  # variation_id -> visitors
    events: Mapping[tuple[str, str], tuple[int, int, int, float]]  # (variation_id, event_key)


class _Keyed(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def key(self) -> str: ...


class ResultsExperiment(_Keyed, Protocol):
    @property
    def variations(self) -> Iterable[_Keyed]: ...


class _Event(_Keyed, Protocol):
    @property
    def experiment_ids(self) -> frozenset[str]: ...


class ResultsConfig(Protocol):
    @property
    def events_by_key(self) -> Mapping[str, _Event]: ...


def clamp_int64(total: int) -> int:
    return max(-_INT64_MAX, min(_INT64_MAX, total))


_KIND = Impression._fields.index("kind")
_USER = Impression._fields.index("user_id")
_I_EXPERIMENT = Impression._fields.index("experiment_id")
_I_VARIATION = Impression._fields.index("variation_id")
_I_RULE_TYPE = Impression._fields.index("rule_type")  # absent from rows older than flags
# Impressions of A/B tests, the only ones results are asked about and conversions attributed
# to. Rollouts' and holdouts' decision events (with sendFlagDecisions, one for each flag of
# every decide) would only add members no query reads.
_COUNTED_RULE_TYPES: Final = frozenset({RULE_TYPE_EXPERIMENT, RULE_TYPE_FEATURE_TEST})
_D_USER = DecisionEvents._fields.index("user_id")
_D_TAILS = DecisionEvents._fields.index("tails")
# A DecisionEvents tail is an impression's fields from experiment_id on.
_T_EXPERIMENT, _T_VARIATION, _T_RULE_TYPE = (
    field - _I_EXPERIMENT for field in (_I_EXPERIMENT, _I_VARIATION, _I_RULE_TYPE)
)
_C_EVENT_KEY = Conversion._fields.index("event_key")
_C_REVENUE = Conversion._fields.index("revenue")
_C_VALUE = Conversion._fields.index("value")
_C_ATTRIBUTIONS = Conversion._fields.index("attributions")


Group = tuple[str, str, int, str]
"""(experiment_id, variation_id, kind, event_key): kind 0 is visitors, 1 one event's converters."""

CountedObserver = Callable[
    [sqlite3.Connection, Mapping[Group, set[str]], Mapping[Group, Sequence[Any]]], None
]
"""Called by `Counter.consume` inside its transaction with what it counted: each group's
users, and each converters group's `[conversions, revenue, value]` (fleet-wide results)."""


_NONE_KNOWN: Final[Mapping[int, Sequence[tuple[Any, ...]]]] = {}

MIN_SQLITE: Final = (3, 38, 0)  # json_each, used to insert a group's members in one statement


def sqlite_problem() -> str | None:
    """Why the SQLite library Python links cannot hold the outbox, or None."""
    if sqlite3.sqlite_version_info >= MIN_SQLITE:
        return None
    need = ".".join(map(str, MIN_SQLITE))
    return f"SQLite {sqlite3.sqlite_version} is too old: trackd needs {need} or later"


def _visitors_of(
    plain: Sequence[tuple[Any, ...]], conversions: list[CountedConversion]
) -> list[tuple[Group, str]]:
    """The (visitors group, user) pairs a row's records count, its attributed conversions
    appended to `conversions`; raises for a malformed record."""
    visitors: list[tuple[Group, str]] = []
    for record in plain:
        kind = record[_KIND]
        if kind == IMPRESSION:
            if len(record) > _I_RULE_TYPE and record[_I_RULE_TYPE] not in _COUNTED_RULE_TYPES:
                continue
            visitors.append(
                ((record[_I_EXPERIMENT], record[_I_VARIATION], _VISITORS, ""), record[_USER])
            )
        elif kind == DECISIONS:
            user_id = record[_D_USER]
            for tail in record[_D_TAILS]:
                if tail[_T_RULE_TYPE] not in _COUNTED_RULE_TYPES:
                    continue
                visitors.append(((tail[_T_EXPERIMENT], tail[_T_VARIATION], _VISITORS, ""), user_id))
        elif record[_C_ATTRIBUTIONS]:
            conversions.append(
                (
                    record[_USER],
                    record[_C_EVENT_KEY],
                    record[_C_REVENUE],
                    record[_C_VALUE],
                    record[_C_ATTRIBUTIONS],
                )
            )
    return visitors


class Counter:
    """Updates the results tables; used by the outbox writer thread only."""

    def __init__(self, observer: CountedObserver | None = None) -> None:
        self._group_ids: dict[tuple[str, str, int, str], int] = {}
        self._observer = observer

    def forget(self) -> None:
        """After a rollback: group ids created in it are gone."""
        self._group_ids.clear()

    def _group(self, conn: sqlite3.Connection, key: tuple[str, str, int, str]) -> int:
        group_id = self._group_ids.get(key)
        if group_id is None:
            conn.execute(
                "INSERT OR IGNORE INTO results_groups"
                " (experiment_id, variation_id, kind, event_key) VALUES (?, ?, ?, ?)",
                key,
            )
            (group_id,) = conn.execute(
                "SELECT id FROM results_groups"
                " WHERE experiment_id = ? AND variation_id = ? AND kind = ? AND event_key = ?",
                key,
            ).fetchone()
            self._group_ids[key] = group_id
        return group_id

    def consume(
        self,
        conn: sqlite3.Connection,
        rows: Iterable[tuple[int, int, bytes]],
        known: Mapping[int, Sequence[tuple[Any, ...]]] = _NONE_KNOWN,
    ) -> int:
        """Counts `(row_id, fmt, body)` rows inside the caller's transaction; returns the
        events seen. An undecodable row is logged and skipped (the dispatcher
        dead-letters it).

        `known` holds, by row id, the records some rows were encoded from (the writer's
        own rows of this run): those are counted from them, their bodies never decoded."""
        members: dict[tuple[str, str, int, str], set[str]] = {}
        totals: dict[tuple[str, str, int, str], list[Any]] = {}
        seen = 0
        for row_id, fmt, body in rows:
            conversions: list[CountedConversion] = []
            try:
                plain = known.get(row_id)
                if plain is not None:
                    seen += event_count(plain)
                elif fmt == COLUMNS_FORMAT:  # a TrackStream batch: conversions only
                    count, conversions = attributed_columns(body)
                    seen += count
                    plain = ()
                elif fmt == ROW_FORMAT:
                    # A Decide call's DecisionEvents stays one record: counted from its
                    # tails, no uuid drawn.
                    plain = decode_unexpanded(body)
                    seen += event_count(plain)
                else:
                    raise ValueError(f"unknown outbox row format {fmt}")
                # Read whole before any of it is counted: a malformed record (a tampered
                # or torn row, which the dispatcher dead-letters) skips its row, where
                # raising would roll the step back and retry it forever.
                visitors = _visitors_of(plain, conversions)
            except Exception:
                log.exception("results_row_undecodable", row_id=row_id)
                continue
            for key, user_id in visitors:
                users = members.get(key)
                if users is None:
                    users = members[key] = set()
                users.add(user_id)
            for user_id, event_key, revenue, value, attributions in conversions:
                revenue = revenue or 0
                value = value or 0.0
                for experiment_id, variation_id in attributions:
                    key = (experiment_id, variation_id, _CONVERTERS, event_key)
                    total = totals.get(key)
                    if total is None:
                        totals[key] = [1, revenue, value]
                        members[key] = {user_id}
                    else:
                        total[0] += 1
                        total[1] += revenue
                        total[2] += value
                        members[key].add(user_id)
        for key, users in members.items():
            group_id = self._group(conn, key)
            # One statement per group, not one per user: each SQLite step releases the GIL
            # and takes it back, and under TrackStream load every such handoff stalls the
            # event loop (one row per user cost about a fifth of the stream's throughput).
            if any("\x00" in user for user in users):
                # json_each cuts a string at its first NUL, which would merge such users.
                added = conn.executemany(
                    "INSERT OR IGNORE INTO results_members VALUES (?, ?)",
                    [(group_id, user) for user in users],
                ).rowcount
            else:
                added = conn.execute(
                    "INSERT OR IGNORE INTO results_members SELECT ?, value FROM json_each(?)",
                    (group_id, json.dumps(list(users))),
                ).rowcount
            count, revenue, value = totals.get(key, (0, 0, 0.0))
            conn.execute(
                "UPDATE results_groups SET users = users + ?, conversions = conversions + ?,"
                " revenue = revenue + ?, value = value + ? WHERE id = ?",
                (max(added, 0), count, clamp_int64(int(revenue)), float(value), group_id),
            )
        if self._observer is not None and members:
            self._observer(conn, members, totals)
        return seen


def query(conn: sqlite3.Connection, experiment_id: str) -> RawCounts:
    visitors: dict[str, int] = {}
    events: dict[tuple[str, str], tuple[int, int, int, float]] = {}
    for variation_id, kind, event_key, users, conversions, revenue, value in conn.execute(
        "SELECT variation_id, kind, event_key, users, conversions, revenue, value"
        " FROM results_groups WHERE experiment_id = ?",
        (experiment_id,),
    ):
        if kind == _VISITORS:
            visitors[variation_id] = users
        else:
            events[(variation_id, event_key)] = (users, conversions, revenue, value)
    return RawCounts(visitors, events)


def assemble(
    raw: RawCounts, config: ResultsConfig, experiment: ResultsExperiment
) -> ExperimentResults:
    """One entry per variation of the live datafile; per variation, every event with counts
    plus the datafile events that name this experiment (with zeros)."""
    named = {
        event.key
        for event in config.events_by_key.values()
        if experiment.id in event.experiment_ids
    }
    variations = []
    for variation in experiment.variations:
        keys = named | {key for (vid, key) in raw.events if vid == variation.id}
        events = []
        for key in sorted(keys):
            converters, conversions, revenue, value = raw.events.get(
                (variation.id, key), (0, 0, 0, 0.0)
            )
            events.append(EventResults(key, converters, conversions, int(revenue), value))
        variations.append(
            VariationResults(
                variation.key, variation.id, raw.visitors.get(variation.id, 0), tuple(events)
            )
        )
    return ExperimentResults(experiment.key, experiment.id, tuple(variations))


class LocalResults(Protocol):
    """This replica's own results: the `Outbox` (or any event log that counts them)."""

    async def results(
        self, config: ResultsConfig, experiment: ResultsExperiment
    ) -> ExperimentResults: ...


__all__ = [
    "MIN_SQLITE",
    "CountedObserver",
    "Counter",
    "EventResults",
    "ExperimentResults",
    "Group",
    "LocalResults",
    "RawCounts",
    "ResultsConfig",
    "ResultsExperiment",
    "VariationResults",
    "assemble",
    "clamp_int64",
    "query",
    "sqlite_problem",
]
