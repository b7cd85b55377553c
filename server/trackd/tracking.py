"""Activate and Track as domain operations: decide, remember, record, attribute.

The data flows one way: request -> decision (pure, on a config snapshot) -> activation
store -> event record -> outbox. Nothing here knows about gRPC.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import structlog

from trackd.activation.store import ActivationStore
from trackd.datafile.model import AttributeValue, Event, Experiment, ProjectConfig
from trackd.decision.engine import Decision, Reason, decide
from trackd.errors import (
    OutboxFull,
    TrackdError,
    UnknownEvent,
    UnknownExperiment,
    UnknownVariation,
)
from trackd.events import records
from trackd.events.outbox import Outbox
from trackd.events.results import ExperimentResults
from trackd.events.tags import parse_tags
from trackd.forced import ForcedVariations
from trackd.live import LiveConfig

log = structlog.get_logger("trackd.tracking")


@dataclass(frozen=True, slots=True)
class Activation:
    decision: Decision
    impression_recorded: bool
    revision: str


class Attributed(NamedTuple):
    experiment_id: str
    experiment_key: str
    variation_id: str
    variation_key: str


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


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    accepted: int
    attributed: int
    errors: tuple[tuple[int, TrackdError], ...]


# A TrackStream batch entry: a parsed event, or the error its parsing raised.
BatchItem = TrackInput | TrackdError


class Tracker:
    def __init__(
        self,
        live: LiveConfig,
        activations: ActivationStore,
        forced: ForcedVariations,
        outbox: Outbox,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.live = live
        self._activations = activations
        self._forced = forced
        self._outbox = outbox
        self._clock = clock

    def _experiment(self, config: ProjectConfig, key: str) -> Experiment:
        experiment = config.experiments_by_key.get(key)
        if experiment is None:
            raise UnknownExperiment(key)
        return experiment

    async def _decide(
        self,
        config: ProjectConfig,
        experiment: Experiment,
        user_id: str,
        attributes: Mapping[str, AttributeValue],
    ) -> tuple[Decision, str | None]:
        sticky = await self._activations.get(user_id, experiment.id)
        decision = decide(
            config,
            experiment,
            user_id,
            attributes,
            forced_variation_id=self._forced.get(user_id, experiment.id),
            sticky_variation_id=sticky,
        )
        return decision, sticky

    async def get_variation(
        self, experiment_key: str, user_id: str, attributes: Mapping[str, AttributeValue]
    ) -> tuple[Decision, str]:
        config = self.live.config
        experiment = self._experiment(config, experiment_key)
        decision, _ = await self._decide(config, experiment, user_id, attributes)
        return decision, config.revision

    async def activate(
        self, experiment_key: str, user_id: str, attributes: Mapping[str, AttributeValue]
    ) -> Activation:
        config = self.live.config
        experiment = self._experiment(config, experiment_key)
        decision, sticky = await self._decide(config, experiment, user_id, attributes)
        variation = decision.variation
        if variation is None:
            return Activation(decision, False, config.revision)
        # One impression per user and experiment within the TTL: a decision that repeats the
        # live activation (sticky, or forced/whitelisted into the same variation) sends none.
        recorded = False
        if sticky != variation.id:
            impression = records.impression(
                config, experiment, variation, user_id, attributes, now_ms=self._now_ms()
            )
            try:
                await self._outbox.append([impression])
            except OutboxFull:
                # Decisions keep flowing when the outbox is full; the activation is not
                # remembered, so the next Activate tries the impression again.
                log.warning("impression_dropped_outbox_full", experiment=experiment.key)
                return Activation(decision, False, config.revision)
            recorded = True
        await self._activations.put(user_id, experiment.id, variation.id)
        return Activation(decision, recorded, config.revision)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _attributions(
        self, config: ProjectConfig, live: Mapping[str, str]
    ) -> tuple[Attributed, ...]:
        """The live activations that still name an experiment and variation of `config`."""
        if not live:
            return ()
        found: list[Attributed] = []
        experiments = config.experiments_by_id
        for experiment_id, variation_id in live.items():
            experiment = experiments.get(experiment_id)
            variation = experiment.variations_by_id.get(variation_id) if experiment else None
            if experiment is not None and variation is not None:
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
        live = await self._activations.live_for_user(item.user_id, event.experiment_ids or None)
        attributed = self._attributions(config, live)
        conversion = self._conversion(config, event, item, attributed, self._now_ms())
        await self._outbox.append([conversion])
        return Tracked(attributed, conversion.uuid)

    async def track_batch(self, items: Sequence[BatchItem]) -> BatchOutcome:
        """Stores the valid events of a batch in one commit; invalid ones are reported by index.

        This is the TrackStream hot path: one activation-store call and one outbox commit
        per batch, one clock read, and no per-event objects beyond the record itself.
        """
        config = self.live.config
        events = config.events_by_key
        errors: list[tuple[int, TrackdError]] = []
        valid: list[tuple[int, TrackInput, Event]] = []
        for index, item in enumerate(items):
            if isinstance(item, TrackdError):
                errors.append((index, item))
                continue
            event = events.get(item.event_key)
            if event is None:
                errors.append((index, UnknownEvent(item.event_key)))
            else:
                valid.append((index, item, event))
        lives = await self._activations.live_for_users(
            [(item.user_id, event.experiment_ids or None) for _, item, event in valid]
        )
        now_ms = self._now_ms()
        conversions: list[records.Conversion] = []
        attributed = 0
        for (index, item, event), live in zip(valid, lives, strict=True):
            attributions = self._attributions(config, live)
            try:
                conversions.append(self._conversion(config, event, item, attributions, now_ms))
            except TrackdError as error:
                errors.append((index, error))
                continue
            attributed += bool(attributions)
        if conversions:
            await self._outbox.append(conversions)
        errors.sort(key=lambda pair: pair[0])
        return BatchOutcome(len(conversions), attributed, tuple(errors))

    async def results(self, experiment_key: str) -> ExperimentResults:
        config = self.live.config
        experiment = self._experiment(config, experiment_key)
        return await self._outbox.results(config, experiment)

    def set_forced_variation(
        self, experiment_key: str, user_id: str, variation_key: str
    ) -> str | None:
        experiment = self._experiment(self.live.config, experiment_key)
        if not variation_key:
            self._forced.clear(user_id, experiment.id)
            return None
        variation = experiment.variations_by_key.get(variation_key)
        if variation is None:
            raise UnknownVariation(experiment_key, variation_key)
        self._forced.set(user_id, experiment.id, variation.id)
        return variation.key

    def get_forced_variation(self, experiment_key: str, user_id: str) -> str | None:
        experiment = self._experiment(self.live.config, experiment_key)
        variation_id = self._forced.get(user_id, experiment.id)
        variation = experiment.variations_by_id.get(variation_id) if variation_id else None
        return variation.key if variation else None

    async def on_new_config(self, config: ProjectConfig) -> int:
        """Drops activations whose experiment stopped running or whose variation vanished,
        and forced variations whose experiment or variation vanished; returns activations
        dropped."""

        def exists(experiment_id: str, variation_id: str) -> bool:
            experiment = config.experiments_by_id.get(experiment_id)
            return experiment is not None and variation_id in experiment.variations_by_id

        def live(experiment_id: str, variation_id: str) -> bool:
            return (
                exists(experiment_id, variation_id)
                and config.experiments_by_id[experiment_id].is_running
            )

        self._forced.retain(exists)
        return await self._activations.retain(live)


__all__ = [
    "Activation",
    "Attributed",
    "BatchItem",
    "BatchOutcome",
    "Reason",
    "TrackInput",
    "Tracked",
    "Tracker",
]
