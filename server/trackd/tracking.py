"""Activate, Decide and Track as domain operations: decide, remember, record, attribute.

The data flows one way: request -> decision (pure, on a config snapshot) -> activation
store -> event record -> outbox. Nothing here knows about gRPC.

When the activation store is shared (Redis) and cannot be reached, decisions and conversions
go on: Activate decides as for a user with no activation (bucketing is deterministic, so every
replica agrees), records the impression (at least once) and says `attribution_degraded`; Track
records the conversion without attributions and says `attribution_unknown`. The store itself
logs the outage and its end, and recovery needs nothing from here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any, Final, NamedTuple, Protocol, TypeVar

import structlog

from trackd import errors as error_types
from trackd.activation.store import ActivationStore, Held, Lookup, Sticky, sticky_variation
from trackd.datafile.model import (
    AttributeValue,
    Event,
    Experiment,
    FeatureFlag,
    FlagDecision,
    ProjectConfig,
    RuleType,
    Variation,
)
from trackd.decision.engine import Decision, Reason, decide, reason_for_variation
from trackd.decision.flags import DecideOption, decide_for_keys
from trackd.errors import (
    ActivationStoreUnavailable,
    OutboxFull,
    OverrideStoreUnavailable,
    TrackdError,
    UnknownEvent,
    UnknownExperiment,
    UnknownVariation,
)
from trackd.events import records
from trackd.events.decisions import DecidedRule, EventTail, decision_events, decision_tails
from trackd.events.outbox import BatchKey, Receipt
from trackd.events.results import (
    ExperimentResults,
    LocalResults,
)
from trackd.events.tags import ParsedTags, parse_tags
from trackd.live import LiveConfig
from trackd.notifications import Notifier
from trackd.overrides import NO_OVERRIDES, DecisionContext, OverrideStore, UserOverrides

log = structlog.get_logger("trackd.tracking")

A = TypeVar("A")
B = TypeVar("B")

# Decisions remembered as activations that attribute conversions but are not sticky: the
# Optimizely SDK never saves a forced or whitelisted decision to its user profile, so once the
# forcing ends the user is decided afresh instead of staying in the forced variation.
# A tuple, not a frozenset: `in` finds a member by identity, where a set hashes the Reason
# through Enum's Python-level __hash__ (a new user's 50-flag decide asks ~20 times).
_NOT_STICKY_REASONS: Final = (Reason.FORCED, Reason.WHITELISTED)


class EventLog(LocalResults, Protocol):
    """Where Tracker commits its records, durably, and counts this daemon's results: the
    `Outbox` (an in-memory one in Tracker's unit tests)."""

    async def append(
        self,
        records: Sequence[records.OutboxRecord] | records.ConversionColumns,
        receipt: Receipt | None = None,
    ) -> bytes | None:
        """Returns once every record is committed; raises OutboxFull, writing nothing. With a
        producer's `receipt`, returns the first commit's answer when its key was already
        committed within the dedup window (storing nothing), else None."""
        ...


class SharedResults(Protocol):
    """Every replica's results, `FleetResults` over Redis: `(results, True)`, or this
    replica's own from `outbox` and False while they cannot be read."""

    async def results(
        self, outbox: LocalResults, config: ProjectConfig, experiment: Experiment
    ) -> tuple[ExperimentResults, bool]: ...


@dataclass(frozen=True, slots=True)
class Activation:
    decision: Decision
    impression_recorded: bool
    revision: str
    attribution_degraded: bool = False  # as Decisions'


class Decided(NamedTuple):
    """One flag's decision, and whether this call committed its decision event(s)."""

    decision: FlagDecision
    impression_recorded: bool


# (decision, impression_recorded): a `Decided` as the plain tuple Decide builds. A 50-flag
# decide makes 50: zipped in C they cost 2.8 us, as Decided NamedTuples 12-21 us (timeit, 2
# busy shared cores).
DecidedPair = tuple[FlagDecision, bool]


@dataclass(frozen=True, slots=True)
class Decisions:
    pairs: tuple[DecidedPair, ...]
    revision: str
    # The activation store was unreachable, or the override store (the same Redis): then
    # decided without the user's forced variations and forced decisions.
    attribution_degraded: bool = False

    @property
    def decisions(self) -> tuple[Decided, ...]:
        """The pairs as `Decided`s, named: for readers off the hot path."""
        return tuple(map(Decided._make, self.pairs))


class _Remembered(NamedTuple):
    """What a feature-test decision does to the activation cache once its events are
    committed (or, for a repeat, instead of any event). A tuple, as `Decided`: a new user's
    50-flag decide makes 25, at 1.05 us each as a frozen dataclass against 0.44 (timeit, 2
    busy shared cores)."""

    experiment_id: str
    variation_id: str
    sticky: bool
    repeat: bool  # the live activation already says this: refresh it, send nothing


# `_new(_Remembered, (...))` builds one without the NamedTuple's Python-level __new__: half
# the cost, ~20 times in a new user's 50-flag decide.
_new: Final = tuple.__new__


class _ReadAhead(NamedTuple):
    """Activate's activation read, sent beside its override read (`Tracker._read_together`):
    `refresh_or_put`'s answer, or `get`'s when that was the read (`refreshed` None), or the
    store's outage."""

    refreshed: Sticky | None
    held: Held | None
    error: ActivationStoreUnavailable | None


class Attributed(NamedTuple):
    experiment_id: str
    experiment_key: str
    variation_id: str
    variation_key: str


Attributes = Mapping[str, AttributeValue]


class TrackInput(NamedTuple):
    """One conversion as the caller sent it (a NamedTuple: one is built per streamed event)."""

    event_key: str
    user_id: str
    attributes: Mapping[str, AttributeValue]
    tags: Mapping[str, AttributeValue]


@dataclass(frozen=True, slots=True)
class Tracked:
    attributions: tuple[Attributed, ...]
    uuid: str
    attribution_unknown: bool = False


# The error families a batch's per-event errors are remembered as, in a receipt: what
# `trackd.rpc.status` maps to a code, so a duplicate's errors answer the same codes.
_ERROR_FAMILIES: Final = {
    family.__name__: family
    for family in (
        error_types.InvalidArgument,
        error_types.NotFound,
        error_types.ResourceExhausted,
        error_types.FailedPrecondition,
        error_types.Unavailable,
    )
}


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    accepted: int
    attributed: int
    errors: tuple[tuple[int, TrackdError], ...]
    attribution_unknown: bool = False
    duplicate: bool = False  # a resent batch: these are the first commit's counts

    def encoded(self) -> bytes:
        """The outcome as a receipt's `ack`, for `decoded` to give back to a resend."""
        errors = [[index, _family(error), str(error)] for index, error in self.errors]
        answer = [self.accepted, self.attributed, self.attribution_unknown, errors]
        return json.dumps(answer, separators=(",", ":")).encode()

    @staticmethod
    def decoded(ack: bytes) -> BatchOutcome:
        """A resent batch's outcome: the first commit's, marked duplicate."""
        accepted, attributed, unknown, errors = json.loads(ack)
        return BatchOutcome(
            accepted,
            attributed,
            tuple((index, _ERROR_FAMILIES[family](message)) for index, family, message in errors),
            unknown,
            duplicate=True,
        )


def _family(error: TrackdError) -> str:
    for name, family in _ERROR_FAMILIES.items():
        if isinstance(error, family):
            return name
    return error_types.InvalidArgument.__name__  # not raised per event today


@dataclass(frozen=True, slots=True)
class Results:
    results: ExperimentResults
    fleet_wide: bool  # every replica's counts (Redis), not only this one's


# A TrackStream batch entry: a parsed event, or the error its parsing raised. The event is a
# TrackInput or a plain tuple of the same fields (trackd.rpc.wire builds plain ones: a
# NamedTuple cost 250 ns more per streamed event to build, of 1.4 us to read one, and unpacks
# slower than an exact tuple).
BatchItem = tuple[str, str, Attributes, Attributes] | TrackdError
# A batch event's (event key, id of its attributes, id of its tags): see Tracker.track_batch.
_Kind = tuple[str, int, int]
_Parsed = tuple[str, str, Attributes, Attributes]  # a BatchItem that is not an error
_KEY_OF, _USER_ID_OF, _ATTRIBUTES_OF, _TAGS_OF = map(itemgetter, range(4))  # of a _Parsed


def _known(
    items: Sequence[BatchItem], events: Mapping[str, Event]
) -> tuple[Sequence[int], Sequence[_Parsed], list[str], list[tuple[int, TrackdError]]]:
    """A batch's parsed events with a known event key, their positions in `items`, their
    event keys, and the (position, error) of every other item. A batch without errors or
    unknown keys (the usual one) is handed back as it is, checked in C passes."""
    if not any(issubclass(kind, TrackdError) for kind in set(map(type, items))):
        keys: list[str] = list(map(_KEY_OF, items))  # type: ignore[arg-type]
        # difference(), unlike issubset(), probes a dict without copying it into a set
        if not set(keys).difference(events):
            return range(len(items)), items, keys, []  # type: ignore[return-value]
    positions: list[int] = []
    parsed: list[_Parsed] = []
    errors: list[tuple[int, TrackdError]] = []
    for position, item in enumerate(items):
        if isinstance(item, TrackdError):
            errors.append((position, item))
        elif item[0] not in events:
            errors.append((position, UnknownEvent(item[0])))
        else:
            positions.append(position)
            parsed.append(item)
    return positions, parsed, list(map(_KEY_OF, parsed)), errors


class Tracker:
    def __init__(
        self,
        live: LiveConfig,
        activations: ActivationStore,
        overrides: OverrideStore,
        outbox: EventLog,
        clock: Callable[[], float] = time.time,
        fleet: SharedResults | None = None,
        default_decide_options: Collection[DecideOption] = (),
        notifier: Notifier | None = None,
    ) -> None:
        self.live = live
        self.notifier = notifier if notifier is not None else Notifier()
        self._activations = activations
        self._overrides = overrides
        # Both stores a network round trip away (Redis): Activate and Decide send their two
        # reads together. In process (memory, LMDB) they are read in turn, as two tasks would
        # cost more CPU than the reads themselves.
        self._reads_together = activations.remote and overrides.remote
        self._default_decide_options = frozenset(default_decide_options)
        self._outbox = outbox
        self._clock = clock
        self._fleet = fleet
        self._decision_facts = _DecisionFacts()
        self.degraded_activations = 0  # Activates answered while the store was unreachable
        self.unattributed_tracks = 0  # conversions recorded with attribution unknown

    def _experiment(self, config: ProjectConfig, key: str) -> Experiment:
        experiment = config.experiments_by_key.get(key)
        if experiment is None:
            raise UnknownExperiment(key)
        return experiment

    async def get_variation(
        self, experiment_key: str, user_id: str, attributes: Mapping[str, AttributeValue]
    ) -> tuple[Decision, str]:
        """The decision from what is live, writing nothing (with the store down: as for a
        user with no activation)."""
        config = self.live.config
        experiment = self._experiment(config, experiment_key)
        held, (forced_id, _) = await self._both(
            self._held_one(user_id, experiment.id), self._forced_variation(user_id, experiment.id)
        )
        sticky = sticky_variation(held)
        decision = decide(
            config,
            experiment,
            user_id,
            attributes,
            forced_variation_id=forced_id,
            sticky_variation_id=sticky,
        )
        self.notifier.experiment_decided(config, decision, user_id, attributes)
        return decision, config.revision

    async def _both(
        self, first: Coroutine[Any, Any, A], second: Coroutine[Any, Any, B]
    ) -> tuple[A, B]:
        """Two reads that do not depend on each other: together when both stores are remote
        (one round trip instead of two), else in turn (two tasks would cost more CPU than
        in-process reads)."""
        if self._reads_together:
            together: tuple[A, B] = await asyncio.gather(first, second)
            return together
        try:
            done = await first
        except BaseException:
            second.close()  # never started: closed, not left unawaited
            raise
        return done, await second

    async def _held_one(self, user_id: str, experiment_id: str) -> Held | None:
        """The live activation, or None, as also when the store could not be reached."""
        try:
            return await self._activations.get(user_id, experiment_id)
        except ActivationStoreUnavailable:
            return None

    async def activate(
        self, experiment_key: str, user_id: str, attributes: Mapping[str, AttributeValue]
    ) -> Activation:
        """`_activation`, its decision then told to whoever listens (trackd.notifications)."""
        activation = await self._activation(experiment_key, user_id, attributes)
        self.notifier.experiment_decided(self.live.config, activation.decision, user_id, attributes)
        return activation

    async def _activation(
        self, experiment_key: str, user_id: str, attributes: Mapping[str, AttributeValue]
    ) -> Activation:
        """Decides, and records an impression unless the decision repeats the live activation
        (one impression per user and experiment within the TTL).

        The impression is committed before the activation is remembered: a crash, a full
        outbox or a store outage between the two can only cause a second impression later
        (at least once), never an activation whose impression was lost. So a sticky user
        costs one store round trip; a new activation two, beside its outbox commit.
        """
        config = self.live.config
        experiment = self._experiment(config, experiment_key)
        if self._reads_together:
            fresh, forced_id, degraded, ahead = await self._read_together(
                config, experiment, user_id, attributes
            )
        else:
            forced_id, degraded = await self._forced_variation(user_id, experiment.id)
            fresh = decide(config, experiment, user_id, attributes, forced_variation_id=forced_id)
            ahead = None
        if fresh.reason is Reason.NOT_RUNNING:
            return Activation(fresh, False, config.revision, degraded)
        try:
            decision, sticky = await self._against_live(
                config, experiment, user_id, attributes, fresh, forced_id, ahead
            )
            store_down = False
        except ActivationStoreUnavailable:
            # Exact anyway (bucketing is deterministic); stickiness unknown, so the impression
            # goes out at least once rather than not at all.
            decision, sticky, store_down = fresh, False, True
        degraded = degraded or store_down
        variation = decision.variation
        if variation is None or sticky:
            self.degraded_activations += degraded
            return Activation(decision, False, config.revision, degraded)
        impression = records.impression(
            config, experiment, variation, user_id, attributes, now_ms=self._now_ms()
        )
        try:
            await self._outbox.append([impression])
        except OutboxFull:
            # Decisions keep flowing when the outbox is full; nothing is remembered, so the
            # next Activate tries the impression again.
            log.warning("impression_dropped_outbox_full", experiment=experiment.key)
            self.degraded_activations += degraded
            return Activation(decision, False, config.revision, degraded)
        if not store_down:
            try:
                await self._activations.put(
                    user_id,
                    experiment.id,
                    variation.id,
                    sticky=decision.reason not in _NOT_STICKY_REASONS,
                )
            except ActivationStoreUnavailable:
                degraded = True
        self.degraded_activations += degraded
        return Activation(decision, True, config.revision, degraded)

    async def _read_together(
        self,
        config: ProjectConfig,
        experiment: Experiment,
        user_id: str,
        attributes: Mapping[str, AttributeValue],
    ) -> tuple[Decision, str | None, bool, _ReadAhead | None]:
        """Activate's two reads sent together (both stores remote): `_forced_variation`'s
        answers, the decision given it, and what was read of the activation.

        Which activation read `_against_live` will want is chosen by the decision without a
        forced variation, before one is known: none when the experiment is not running, `get`
        when the decision does not stick anyway (a whitelisted user, forced or not), else
        `refresh_or_put` as for a bucketed user. Should a forced variation then turn up (QA
        users), it is decided again, and `_against_live` reads `get` as before unless the
        refresh found a sticky activation (then it is known not to be the forcing's). That
        refresh is the one difference from reading in turn: a sticky activation a forced
        decision then replaces was refreshed first, which shows only when the replacement
        fails (the outbox full, the store down): it stays live a TTL longer.
        """
        unforced = decide(config, experiment, user_id, attributes)
        if unforced.reason is Reason.NOT_RUNNING:
            forced_id, degraded = await self._forced_variation(user_id, experiment.id)
            return unforced, forced_id, degraded, None
        (forced_id, degraded), ahead = await asyncio.gather(
            self._forced_variation(user_id, experiment.id),
            self._read_ahead(user_id, experiment.id, unforced.reason in _NOT_STICKY_REASONS),
        )
        if forced_id is None:
            return unforced, None, degraded, ahead
        fresh = decide(config, experiment, user_id, attributes, forced_variation_id=forced_id)
        return fresh, forced_id, degraded, ahead

    async def _read_ahead(self, user_id: str, experiment_id: str, not_sticky: bool) -> _ReadAhead:
        store = self._activations
        try:
            if not_sticky:
                return _ReadAhead(None, await store.get(user_id, experiment_id), None)
            return _ReadAhead(await store.refresh_or_put(user_id, experiment_id, None), None, None)
        except ActivationStoreUnavailable as error:
            return _ReadAhead(None, None, error)

    async def _forced_variation(self, user_id: str, experiment_id: str) -> tuple[str | None, bool]:
        """The user's forced variation id, and True when the override store could not be
        reached (then decided as if nothing were forced, and the call says it degraded)."""
        try:
            return await self._overrides.get_variation(user_id, experiment_id), False
        except OverrideStoreUnavailable:
            return None, True

    async def _user_overrides(self, user_id: str) -> tuple[UserOverrides, bool]:
        """Everything forced for the user (one read: a Decide of 50 flags asks once), and
        True when the override store could not be reached."""
        try:
            return await self._overrides.for_user(user_id), False
        except OverrideStoreUnavailable:
            return NO_OVERRIDES, True

    async def _against_live(
        self,
        config: ProjectConfig,
        experiment: Experiment,
        user_id: str,
        attributes: Mapping[str, AttributeValue],
        fresh: Decision,
        forced_id: str | None,
        ahead: _ReadAhead | None = None,
    ) -> tuple[Decision, bool]:
        """The decision given the user's live activation, and whether it repeats it (then the
        activation's expiry is refreshed here and there is no impression). `ahead`: what
        `_read_together` already read of the activation, used instead of reading it again."""
        store = self._activations
        if ahead is not None and ahead.error is not None:
            raise ahead.error
        if fresh.reason in _NOT_STICKY_REASONS:
            # They beat the cache; the same forcing as the live one is a repeat.
            assert fresh.variation is not None
            forced = fresh.variation.id
            if await self._held_now(user_id, experiment.id, ahead) != Held(forced, sticky=False):
                return fresh, False
            await store.put(user_id, experiment.id, forced, sticky=False)
            return fresh, True
        # Sticky beats audiences and traffic: refresh a live sticky activation, store nothing.
        if ahead is not None and ahead.refreshed is not None:
            held = ahead.refreshed
        else:
            held = await store.refresh_or_put(user_id, experiment.id, None)
        if not held.sticky or held.variation_id is None:
            return fresh, False
        sticky = decide(
            config,
            experiment,
            user_id,
            attributes,
            forced_variation_id=forced_id,
            sticky_variation_id=held.variation_id,
        )
        # Not STICKY: the held variation left the datafile before `retain` caught up.
        return (sticky, True) if sticky.reason is Reason.STICKY else (fresh, False)

    async def _held_now(
        self, user_id: str, experiment_id: str, ahead: _ReadAhead | None
    ) -> Held | None:
        """The live activation, as `get` answers it: as read ahead, else read now."""
        if ahead is not None:
            if ahead.refreshed is None:
                return ahead.held  # the read ahead was `get`
            if ahead.refreshed.sticky:
                assert ahead.refreshed.variation_id is not None
                return Held(ahead.refreshed.variation_id, sticky=True)
        return await self._activations.get(user_id, experiment_id)

    async def decide(
        self,
        user_id: str,
        attributes: Mapping[str, AttributeValue],
        flag_keys: Sequence[str],
        options: Collection[DecideOption] = (),
        *,
        forced_decisions: Mapping[DecisionContext, str] = NO_OVERRIDES.decisions,
    ) -> Decisions:
        """Decides flags as the SDK's decide_for_keys (decide_all when `flag_keys` is empty),
        with the daemon's default options added, and records their decision events.

        `forced_decisions` are this call's alone (Agent's `forcedDecisions` in a body): laid
        over the user's held ones as set_forced_decision on the same user context would lay
        them (one set; the same flag and rule: this call's wins), and never stored.

        A feature test's decision is remembered as Activate remembers one (trackd's
        activation cache is the SDK's user profile): its events are committed first, then the
        activation; deciding the same rule and variation again within the TTL refreshes the
        activation and sends nothing (a bypassed holdout's event included). Forced decisions,
        forced variations and whitelists are remembered not sticky, and with
        IGNORE_USER_PROFILE_SERVICE nothing sticky is read or written (the SDK saves none of
        them to its profile). Rollouts and holdouts are never remembered, so never attributed;
        their events go out on every decide that sends them. Every event of the call is one
        outbox commit.
        """
        config = self.live.config
        chosen = self._default_decide_options.union(options)
        (overrides, degraded), (held, store_down) = await self._both(
            self._user_overrides(user_id), self._held(config, user_id, flag_keys)
        )
        degraded = degraded or store_down
        forced = overrides.decisions
        if forced_decisions:
            forced = {**forced, **forced_decisions}
        forced_variations = overrides.variations

        # What the engine asks of each feature test, as a dict's own `get`: a returning user's
        # 50-flag decide asks 50 times, and a closure over `held` cost ~0.3 us a question.
        sticky_ids = {
            experiment_id: live.variation_id for experiment_id, live in held.items() if live.sticky
        }

        # decide_all is decide_for_keys over every flag in datafile order. The SDK sends the
        # events of the disabled flags ENABLED_FLAGS_ONLY leaves out, so it is applied here,
        # after the events, rather than by the engine.
        enabled_only = DecideOption.ENABLED_FLAGS_ONLY in chosen
        decided = decide_for_keys(
            config,
            flag_keys or config.flag_keys,
            user_id,
            attributes,
            chosen - {DecideOption.ENABLED_FLAGS_ONLY},
            forced_decisions=forced,
            # Without any, the engine skips the lookups (two calls a flag otherwise).
            forced_variation=forced_variations.get if forced_variations else None,
            sticky_variation=sticky_ids.get if sticky_ids else None,
        )
        if DecideOption.DISABLE_DECISION_EVENT in chosen:
            quiet = list(zip(decided, repeat(False)))
            self.notifier.flags_decided(user_id, attributes, quiet)
            return Decisions(_shown(quiet, enabled_only), config.revision, degraded)

        ignore_profile = DecideOption.IGNORE_USER_PROFILE_SERVICE in chosen
        # Nothing forced or ignored (a usual decide): a feature test's memory is one of its
        # prebuilt `_Facts` unless the user is whitelisted in it or holds another activation
        # of it, which spares ~20 `_remembered` calls a user. In process, with a null outbox
        # (bench_decide's 50 flags, thread_time, alternated runs): new users 215-219 ->
        # 183-189 us per user; returning ones 280-285 -> 227-232 with `sticky_ids` above
        # and `held_for_user`'s single lookup.
        unremarkable = not (forced or forced_variations or ignore_profile)
        tails: list[EventTail] = []
        sending: list[bool] = []
        remembered: list[_Remembered] = []
        known = self._decision_facts.known(config)
        work_out = self._decision_facts.work_out
        for decision in decided:
            # Inlined `_DecisionFacts` lookup: a 50-flag decide makes 50.
            facts = known.get(id(decision))
            if facts is None or facts.decision is not decision:
                facts = work_out(config, decision)
            if facts.flag is None:
                sending.append(False)
                continue
            # Only a feature test's decision is remembered: half a benchmark decide's 50 flags
            # are rollouts, each spared a call.
            if facts.test is not None:
                experiment = facts.test[0]
                live = held.get(experiment.id) if held else None
                if (
                    unremarkable
                    and (live is None or live == facts.sticky)
                    and user_id not in experiment.outcomes.whitelisted
                ):
                    memory = facts.first if live is None else facts.again
                else:
                    memory = self._remembered(
                        facts.flag,
                        facts.test,
                        user_id,
                        forced,
                        forced_variations,
                        held,
                        ignore_profile,
                    )
                if memory is not None:
                    remembered.append(memory)
                    if memory.repeat:
                        sending.append(False)
                        continue
            tails += facts.tails
            sending.append(bool(facts.tails))
        events = decision_events(config, user_id, attributes, tails, now_ms=self._now_ms())
        recorded = events is not None
        if events is not None:
            try:
                await self._outbox.append([events])
            except OutboxFull:
                # As Activate: decisions flow on, nothing new is remembered, so the next
                # decide tries the events again.
                log.warning("decision_events_dropped_outbox_full", count=len(tails))
                recorded = False
                remembered = [memory for memory in remembered if memory.repeat]
        if not degraded:
            degraded = await self._remember(user_id, remembered)
        self.degraded_activations += degraded
        # `sending` holds one entry a decision: every turn of the loop above appends one.
        answers = list(zip(decided, sending if recorded else repeat(False), strict=False))
        # Before ENABLED_FLAGS_ONLY leaves some out: the SDK notifies every flag it decides.
        self.notifier.flags_decided(user_id, attributes, answers)
        return Decisions(_shown(answers, enabled_only), config.revision, degraded)

    async def _held(
        self, config: ProjectConfig, user_id: str, flag_keys: Sequence[str]
    ) -> tuple[dict[str, Held], bool]:
        """The user's live activations in the feature tests of the flags asked for, and True
        when the store could not be reached (then none: decided as for a user with no
        activation, and events go out at least once)."""
        try:
            return await self._live_held(config, user_id, flag_keys), False
        except ActivationStoreUnavailable:
            return {}, True

    async def _live_held(
        self, config: ProjectConfig, user_id: str, flag_keys: Sequence[str]
    ) -> dict[str, Held]:
        """`_held`'s read; raises ActivationStoreUnavailable."""
        flags = config.flags_by_key
        experiment_ids = (
            list(
                dict.fromkeys(
                    experiment.id
                    for key in flag_keys
                    if (flag := flags.get(key)) is not None
                    for experiment in flag.experiments
                )
            )
            if flag_keys
            else config.feature_test_ids
        )
        if not experiment_ids:
            return {}
        # One call, stickiness included: with Redis one round trip (was `live_for_user`, then
        # a `get` per live activation, a second round trip for every returning user).
        return await self._activations.held_for_user(user_id, experiment_ids)

    def _remembered(
        self,
        flag: FeatureFlag,
        test: tuple[Experiment, Variation],
        user_id: str,
        forced: Mapping[tuple[str, str | None], str],
        forced_variations: Mapping[str, str],
        held: Mapping[str, Held],
        ignore_profile: bool,
    ) -> _Remembered | None:
        """What a feature test's decision (its rule and variation: `_DecisionFacts.test`)
        does to the activation cache; None when it is sent but not remembered."""
        experiment, variation = test
        live = held.get(experiment.id)
        forced_key = forced.get((flag.key, experiment.key)) if forced else None
        if forced_key is not None and flag.variations_by_key.get(forced_key) is variation:
            reason = Reason.FORCED  # a forced decision: never saved to the SDK's user profile
        else:
            # The engine's own reason for this rule: forced variation, whitelist, sticky...
            reason = reason_for_variation(
                experiment,
                user_id,
                forced_variation_id=forced_variations.get(experiment.id),
                sticky_variation_id=None if ignore_profile else sticky_variation(live),
            )
        if reason in _NOT_STICKY_REASONS:
            # As Activate: the same forcing as the live activation is a repeat.
            repeat = live == Held(variation.id, sticky=False)
            return _new(_Remembered, (experiment.id, variation.id, False, repeat))
        if ignore_profile:
            # The SDK neither reads nor saves the profile: a live activation of this variation
            # is a repeat; a sticky one of another variation stays the user's (the SDK's
            # profile still holds it), so this decision is sent but not remembered; else it
            # is remembered for attribution only, not sticky.
            if live is not None and live.variation_id == variation.id:
                return _new(_Remembered, (experiment.id, variation.id, live.sticky, True))
            if live is not None and live.sticky:
                return None
            return _new(_Remembered, (experiment.id, variation.id, False, False))
        return _new(_Remembered, (experiment.id, variation.id, True, reason is Reason.STICKY))

    async def _remember(self, user_id: str, remembered: Sequence[_Remembered]) -> bool:
        """Stores (or refreshes) the activations; True when the store could not be reached."""
        try:
            await self._activations.put_many(user_id, remembered)
        except ActivationStoreUnavailable:
            return True
        return False

    async def set_forced_decision(
        self, user_id: str, flag_key: str, rule_key: str | None, variation_key: str
    ) -> None:
        """As the SDK's set_forced_decision: kept whatever the datafile says, ignored when
        deciding while it names no variation of the flag. In the override store: every worker
        and replica sharing it honours it at once."""
        await self._overrides.set_decision(user_id, flag_key, rule_key, variation_key)

    async def get_forced_decision(
        self, user_id: str, flag_key: str, rule_key: str | None
    ) -> str | None:
        return await self._overrides.get_decision(user_id, flag_key, rule_key)

    async def remove_forced_decision(
        self, user_id: str, flag_key: str, rule_key: str | None
    ) -> bool:
        return await self._overrides.remove_decision(user_id, flag_key, rule_key)

    async def remove_all_forced_decisions(self, user_id: str) -> int:
        return await self._overrides.remove_all_decisions(user_id)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _attributions(
        self, config: ProjectConfig, live: Mapping[str, str]
    ) -> tuple[Attributed, ...]:
        """The live activations that still name a running experiment and a variation of
        `config`."""
        if not live:
            return ()
        found: list[Attributed] = []
        experiments = config.experiments_by_id
        for experiment_id, variation_id in live.items():
            experiment = experiments.get(experiment_id)
            if experiment is None or not experiment.is_running:
                continue  # stopped: its activations are being dropped, perhaps late
            variation = experiment.variations_by_id.get(variation_id)
            if variation is not None:
                found.append(Attributed(experiment.id, experiment.key, variation.id, variation.key))
        return tuple(found)

    def _event(self, config: ProjectConfig, event_key: str) -> Event:
        event = config.events_by_key.get(event_key)
        if event is None:
            raise UnknownEvent(event_key)
        return event

    def _conversion(
        self,
        config: ProjectConfig,
        event: Event,
        item: TrackInput,
        attributed: tuple[Attributed, ...],
        now_ms: int,
    ) -> records.Conversion:
        return records.conversion(
            config,
            event,
            item.user_id,
            item.attributes,
            parse_tags(item.tags),
            [(a.experiment_id, a.variation_id) for a in attributed],
            now_ms=now_ms,
        )

    async def track(self, item: TrackInput) -> Tracked:
        config = self.live.config
        event = self._event(config, item.event_key)
        # An event that lists no experiments belongs to every experiment.
        unknown = False
        try:
            live = await self._activations.live_for_user(item.user_id, event.experiment_ids or None)
        except ActivationStoreUnavailable:
            live, unknown = {}, True
        attributed = self._attributions(config, live)
        conversion = self._conversion(config, event, item, attributed, self._now_ms())
        await self._outbox.append([conversion])
        self.notifier.tracked(event, item.user_id, item.attributes, item.tags, conversion)
        if unknown:
            self.unattributed_tracks += 1
        return Tracked(attributed, conversion.uuid, unknown)

    async def track_batch(
        self, items: Sequence[BatchItem], batch_key: BatchKey | None = None
    ) -> BatchOutcome:
        """Stores the valid events of a batch in one commit; invalid ones are reported by index.

        With a producer's `batch_key`, the outcome is committed with the events (even when none is
        valid, so a resend gets the same answer); a key already committed within the dedup
        window stores nothing and answers the first commit's outcome, marked duplicate.

        This is the TrackStream hot path: one activation-store call and one outbox commit
        per batch, one clock read and one uuid draw, and each event a row of references in
        the batch's columns (`records.ConversionColumns`), not a record of its own.
        """
        config = self.live.config
        events = config.events_by_key
        # The batch as columns (position in `items`, event, user id, attributes, tags), each
        # built by one pass in C (map, zip): a statement per event cost more than the rest of
        # the batch's tracking. Errors and unknown event keys are set aside first.
        positions, parsed, keys, errors = _known(items, events)
        users: list[str] = list(map(_USER_ID_OF, parsed))
        kind_events = {key: events[key] for key in set(keys)}
        # An event that lists no experiments belongs to every experiment.
        scopes = {key: event.experiment_ids or None for key, event in kind_events.items()}
        lookups: list[Lookup] = list(zip(users, map(scopes.__getitem__, keys), strict=True))
        # Each event's kind: its event key and its attribute and tag maps by identity.
        # Stream events share their maps (trackd.rpc.wire hands out one per distinct map), so
        # a batch holds a handful of kinds, each worked out once below; sound while `items`
        # holds every map. A kind is then named by the position of its first event.
        kinds: list[_Kind] = list(
            zip(
                keys,
                map(id, map(_ATTRIBUTES_OF, parsed)),
                map(id, map(_TAGS_OF, parsed)),
                strict=True,
            )
        )
        first_of_kind: dict[_Kind, int] = {}
        firsts = list(map(first_of_kind.setdefault, kinds, range(len(kinds))))
        unknown = False
        try:
            lives = await self._activations.live_for_users(lookups)
        except ActivationStoreUnavailable:
            lives, unknown = [{} for _ in users], True
        batch = records.ConversionColumns(config, self._now_ms())
        shapes: dict[int, records.Shape] = {}
        refused: dict[int, TrackdError] = {}
        parsed_tags: dict[int, ParsedTags] = {}
        for head in first_of_kind.values():
            event_key, _, attributes, tags_map = parsed[head]
            try:
                tags = parsed_tags.get(id(tags_map))
                if tags is None:
                    tags = parsed_tags[id(tags_map)] = parse_tags(tags_map)
            except TrackdError as error:
                refused[head] = error
            else:
                shapes[head] = batch.shape(kind_events[event_key], attributes, tags)
        # Users of a batch share a handful of attribution sets: resolve each once.
        resolved: dict[tuple[tuple[str, str], ...], tuple[records.Attribution, ...]] = {}

        def attributions(live: Mapping[str, str]) -> tuple[records.Attribution, ...]:
            key = tuple(live.items())
            found = resolved.get(key)
            if found is None:
                found = resolved[key] = tuple(
                    (a.experiment_id, a.variation_id) for a in self._attributions(config, live)
                )
            return found

        pairs: list[tuple[records.Attribution, ...]]
        if any(lives):
            pairs = [attributions(live) if live else () for live in lives]
        else:  # a batch of new users: nothing found, no pass in Python
            pairs = [()] * len(lives)
        if refused:  # events whose tags are invalid: reported, not stored
            kept: list[int] = []
            for position, head in enumerate(firsts):
                refusal = refused.get(head)
                if refusal is None:
                    kept.append(position)
                else:
                    errors.append((positions[position], refusal))
            firsts = [firsts[position] for position in kept]
            users = [users[position] for position in kept]
            pairs = [pairs[position] for position in kept]
        batch.extend(list(map(shapes.__getitem__, firsts)), users, pairs)
        attributed = len(pairs) - pairs.count(())
        errors.sort(key=lambda pair: pair[0])
        outcome = BatchOutcome(len(batch), attributed, tuple(errors), unknown)
        if batch_key is not None:
            first = await self._outbox.append(batch, Receipt(batch_key, outcome.encoded()))
            if first is not None:
                return BatchOutcome.decoded(first)
        elif batch:
            await self._outbox.append(batch)
        if self.notifier.listened:
            valid = [
                (position, kind_events[key], user_id, attributes, tags_map)
                for position, (key, user_id, attributes, tags_map) in zip(
                    positions, parsed, strict=True
                )
            ]
            self.notifier.tracked_batch(config, valid, errors)
        if unknown:
            self.unattributed_tracks += len(batch)
        return outcome

    async def results(self, experiment_key: str) -> Results:
        """The fleet's results when replicas share Redis (this replica's own while Redis is
        down), else this daemon's."""
        config = self.live.config
        experiment = self._experiment(config, experiment_key)
        if self._fleet is not None:
            results, fleet_wide = await self._fleet.results(self._outbox, config, experiment)
            return Results(results, fleet_wide)
        return Results(await self._outbox.results(config, experiment), False)

    async def set_forced_variation(
        self, experiment_key: str, user_id: str, variation_key: str
    ) -> str | None:
        """As the SDK's set_forced_variation (an empty key clears it), in the override store."""
        experiment = self._experiment(self.live.config, experiment_key)
        if not variation_key:
            await self._overrides.remove_variation(user_id, experiment.id)
            return None
        variation = experiment.variations_by_key.get(variation_key)
        if variation is None:
            raise UnknownVariation(experiment_key, variation_key)
        await self._overrides.set_variation(user_id, experiment.id, variation.id)
        return variation.key

    async def get_forced_variation(self, experiment_key: str, user_id: str) -> str | None:
        experiment = self._experiment(self.live.config, experiment_key)
        variation_id = await self._overrides.get_variation(user_id, experiment.id)
        variation = experiment.variations_by_id.get(variation_id) if variation_id else None
        return variation.key if variation else None

    async def on_new_config(self, config: ProjectConfig) -> int:
        """Drops activations whose experiment stopped running or whose variation vanished;
        returns activations dropped. Forced variations are left to their TTL: one naming a
        variation gone from the datafile is ignored when deciding and read as none."""
        self.notifier.config_updated(config)

        def exists(experiment_id: str, variation_id: str) -> bool:
            experiment = config.experiments_by_id.get(experiment_id)
            return experiment is not None and variation_id in experiment.variations_by_id

        def live(experiment_id: str, variation_id: str) -> bool:
            return (
                exists(experiment_id, variation_id)
                and config.experiments_by_id[experiment_id].is_running
            )

        return await self._activations.retain(live)


def _shown(decided: Iterable[DecidedPair], enabled_only: bool) -> tuple[DecidedPair, ...]:
    """The decisions answered: with ENABLED_FLAGS_ONLY, the enabled ones and the errors (as
    the SDK's decide_for_keys, and trackd.decision.flags without that option)."""
    if not enabled_only:
        return tuple(decided)
    return tuple(
        (decision, recorded)
        for decision, recorded in decided
        if decision.enabled or decision.error is not None
    )


class _Facts(NamedTuple):
    """What Decide does with one flag decision, whoever the user: the flag it sends events
    for (None: an unknown flag or an error, which sends and remembers nothing), the events'
    tails (`decision_tails`), and a feature test's rule and variation, which are
    remembered."""

    decision: FlagDecision
    flag: FeatureFlag | None
    tails: tuple[EventTail, ...]
    test: tuple[Experiment, Variation] | None
    # What `Tracker._remembered` answers for `test` when nothing is forced or ignored and the
    # user is not whitelisted: with no live activation, a first sticky one (`first`); with a
    # live one equal to `sticky`, a repeat of it (`again`). `sticky` is None when the
    # variation cannot be sticky (it is not among the rule's own).
    first: _Remembered | None
    sticky: Held | None
    again: _Remembered | None


class _DecisionFacts:
    """Each flag decision's `_Facts`, worked out once: most decisions are shared, built at
    load (`FeatureFlag.outcomes`), so a 50-flag decide reads 50 entries instead of looking up
    50 flags and building 50 rules' events. Keyed by identity, the decision
    held beside its facts so its id is not reused; emptied with each new snapshot (its
    `sendFlagDecisions` and its decisions) and when decisions built per call (forced ones)
    fill it."""

    LIMIT: Final = 65_536

    def __init__(self) -> None:
        self._config: ProjectConfig | None = None
        self._known: dict[int, _Facts] = {}

    def known(self, config: ProjectConfig) -> Mapping[int, _Facts]:
        """The facts kept for `config`'s decisions, by the decision's id (a hit is one whose
        `decision` is the decision looked up); `work_out` the others."""
        if config is not self._config or len(self._known) >= self.LIMIT:
            self._known = {}
            self._config = config
        return self._known

    def work_out(self, config: ProjectConfig, decision: FlagDecision) -> _Facts:
        flag = config.flags_by_key.get(decision.flag_key)
        if flag is None or decision.error is not None:
            facts = _Facts(decision, None, (), None, None, None, None)
        else:
            rule, variation = decision.rule, decision.variation
            test = first = sticky = again = None
            # A feature test's decision without a rule or a variation of it (a flag-only
            # forced decision) is sent but not remembered.
            if (
                decision.rule_type is RuleType.FEATURE_TEST
                and rule is not None
                and variation is not None
                and variation.id in rule.variations_by_id
            ):
                test = (rule, variation)
                first = _Remembered(rule.id, variation.id, True, False)
                if variation.id in rule.outcomes.sticky:
                    sticky = Held(variation.id, sticky=True)
                    again = _Remembered(rule.id, variation.id, True, True)
            tails = self._worked_out(config, flag, decision)
            facts = _Facts(decision, flag, tails, test, first, sticky, again)
        if not decision.reasons and config is self._config:  # with reasons: this call's alone
            self._known[id(decision)] = facts
        return facts

    @staticmethod
    def _worked_out(
        config: ProjectConfig, flag: FeatureFlag, decision: FlagDecision
    ) -> tuple[EventTail, ...]:
        bypassed = decision.bypassed_holdout
        return decision_tails(
            config,
            flag.key,
            _decided_rule(flag, decision),
            bypassed_holdout=None
            if bypassed is None
            else DecidedRule(
                RuleType.HOLDOUT.value,
                bypassed.holdout.id,
                bypassed.holdout.key,
                variation_id=bypassed.variation.id,
                variation_key=bypassed.variation.key,
                enabled=bypassed.variation.feature_enabled,
            ),
        )


def _decided_rule(flag: FeatureFlag, decision: FlagDecision) -> DecidedRule:
    """A decision as the plain values its events name (see DecidedRule.variation_key)."""
    rule, variation = decision.rule, decision.variation
    assert decision.rule_type is not None  # only errors have none
    variation_key = ""
    if variation is not None:
        variation_key = variation.key
        if decision.rule_type is not RuleType.HOLDOUT:
            variation_key = flag.variations_by_id.get(variation.id, variation).key
    return DecidedRule(
        decision.rule_type.value,
        rule.id if rule else "",
        rule.key if rule else "",
        rule.layer_id if rule else "",
        variation.id if variation else "",
        variation_key,
        variation is not None and variation.feature_enabled,
    )


__all__ = [
    "Activation",
    "Attributed",
    "BatchItem",
    "BatchOutcome",
    "Decided",
    "Decisions",
    "EventLog",
    "Reason",
    "Results",
    "SharedResults",
    "TrackInput",
    "Tracked",
    "Tracker",
]
