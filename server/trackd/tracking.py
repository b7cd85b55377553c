"""Activate and Track as domain operations: decide, remember, record, attribute.

The data flows one way: request -> decision (pure, on a config snapshot) -> activation
store -> event record -> outbox. Nothing here knows about gRPC.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from trackd.activation.store import ActivationStore
from trackd.datafile.model import AttributeValue, Experiment, ProjectConfig
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


@dataclass(frozen=True, slots=True)
class Attributed:
    experiment_id: str
    experiment_key: str
    variation_id: str
    variation_key: str


@dataclass(frozen=True, slots=True)
class TrackInput:
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
        found: list[Attributed] = []
        for experiment_id, variation_id in live.items():
            experiment = config.experiments_by_id.get(experiment_id)
            variation = experiment.variations_by_id.get(variation_id) if experiment else None
            if experiment is not None and variation is not None:
                found.append(Attributed(experiment.id, experiment.key, variation.id, variation.key))
        return tuple(found)

    def _conversion(
        self, config: ProjectConfig, item: TrackInput, live: Mapping[str, str]
    ) -> tuple[records.Conversion, tuple[Attributed, ...]]:
        event = config.events_by_key.get(item.event_key)
        if event is None:
            raise UnknownEvent(item.event_key)
        tags = parse_tags(item.tags)
        attributed = self._attributions(config, live)
        conversion = records.conversion(
            config,
            event,
            item.user_id,
            item.attributes,
            tags,
            tuple((a.experiment_id, a.variation_id) for a in attributed),
            now_ms=self._now_ms(),
        )
        return conversion, attributed

    def _event_experiments(self, config: ProjectConfig, event_key: str) -> frozenset[str] | None:
        event = config.events_by_key.get(event_key)
        if event is None:
            raise UnknownEvent(event_key)
        # An event with no experiment ids belongs to every experiment.
        return event.experiment_ids or None

    async def track(self, item: TrackInput) -> Tracked:
        config = self.live.config
        experiment_ids = self._event_experiments(config, item.event_key)
        live = await self._activations.live_for_user(item.user_id, experiment_ids)
        conversion, attributed = self._conversion(config, item, live)
        await self._outbox.append([conversion])
        return Tracked(attributed, conversion.uuid)

    async def track_batch(self, items: Sequence[BatchItem]) -> BatchOutcome:
        """Stores the valid events of a batch in one commit; invalid ones are reported by index."""
        config = self.live.config
        errors: list[tuple[int, TrackdError]] = []
        valid: list[tuple[int, TrackInput, frozenset[str] | None]] = []
        for index, item in enumerate(items):
            if isinstance(item, TrackdError):
                errors.append((index, item))
                continue
            try:
                valid.append((index, item, self._event_experiments(config, item.event_key)))
            except TrackdError as error:
                errors.append((index, error))
        lives = await self._activations.live_for_users(
            [(item.user_id, experiment_ids) for _, item, experiment_ids in valid]
        )
        conversions: list[records.Conversion] = []
        attributed = 0
        for (index, item, _), live in zip(valid, lives, strict=True):
            try:
                conversion, attributions = self._conversion(config, item, live)
            except TrackdError as error:
                errors.append((index, error))
                continue
            conversions.append(conversion)
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
