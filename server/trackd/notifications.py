"""Notifications of decisions and conversions as they are made, for whoever listens (Agent's
`/v1/notifications/event-stream`, trackd.rpc.agent_event_stream), shaped as the Go SDK's
notification payloads, which Agent writes out with Go's `json.Marshal`: its struct fields
capitalized and in order (`Type`, `UserContext`, `DecisionInfo`; `EventKey`, `UserContext`,
`EventTags`, `ConversionEvent`; `Type`, `Revision`), its maps with their keys sorted.

Tracker calls one method per Activate, GetVariation, Decide, Track, TrackStream batch or new
datafile, and
each returns at once while nobody listens, the common case. A listener's queue is bounded:
one that reads too slowly loses the notifications that do not fit (counted in `dropped`),
so it never blocks a decision nor grows the daemon's memory. Each notification is written
as JSON once, whatever the number of listeners.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from trackd.datafile.model import (
    AttributeValue,
    Decision,
    Event,
    FlagDecision,
    ProjectConfig,
)
from trackd.events import records
from trackd.events.tags import parse_tags

DECISION: Final = "decision"  # the Go SDK's notification.Decision
TRACK: Final = "track"  # notification.Track
CONFIG_UPDATE: Final = "project_config_update"  # notification.ProjectConfigUpdate
TYPES: Final = (DECISION, TRACK, CONFIG_UPDATE)
QUEUE_LIMIT: Final = 1024  # notifications a listener may be behind before it loses some
ATTRIBUTE_TYPE: Final = "custom"  # the Go SDK's VisitorAttribute.AttributeType, always


class Notification(NamedTuple):
    type: str  # DECISION or TRACK
    data: str  # the payload as JSON


def _json(payload: Mapping[str, Any]) -> str:
    # Compact and not ASCII-escaped, as Go's json.Marshal.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _user_context(user_id: str, attributes: Mapping[str, AttributeValue]) -> dict[str, Any]:
    """The Go SDK's entities.UserContext; trackd has no ODP segments."""
    return {
        "ID": user_id,
        "Attributes": dict(sorted(attributes.items())),
        "QualifiedSegments": None,
    }


class Subscription:
    """One listener: the notifications of the types it asked for, in order, as they come."""

    def __init__(self, notifier: Notifier, types: Collection[str], limit: int) -> None:
        self._notifier = notifier
        self.types = frozenset(types)
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(limit)
        self.dropped = 0

    def offer(self, notification: Notification) -> None:
        if notification.type not in self.types:
            return
        try:
            self._queue.put_nowait(notification)
        except asyncio.QueueFull:
            self.dropped += 1
            self._notifier.dropped += 1

    async def next(self) -> list[Notification]:
        """The notifications waiting (at least one, waiting for it if need be)."""
        waiting = [await self._queue.get()]
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        return waiting

    def close(self) -> None:
        self._notifier.unsubscribe(self)


class Notifier:
    def __init__(self, queue_limit: int = QUEUE_LIMIT) -> None:
        self._queue_limit = queue_limit
        self._subscriptions: list[Subscription] = []
        self.dropped = 0  # notifications lost by listeners that read too slowly, in all
        self._config: ProjectConfig | None = None  # the last one notified
        self._flag_infos = _FlagInfos()

    @property
    def listened(self) -> bool:
        return bool(self._subscriptions)

    def subscribe(self, types: Collection[str] = TYPES) -> Subscription:
        subscription = Subscription(self, types, self._queue_limit)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def _publish(self, kind: str, payloads: Iterable[Mapping[str, Any]]) -> None:
        self._publish_json(kind, map(_json, payloads))

    def _publish_json(self, kind: str, texts: Iterable[str]) -> None:
        wanted = [s for s in self._subscriptions if kind in s.types]
        for text in texts:
            notification = Notification(kind, text)
            for subscription in wanted:
                subscription.offer(notification)

    # -- what Tracker calls: each returns at once while nobody listens ----------------------

    def config_updated(self, config: ProjectConfig) -> None:
        """A new datafile is live: the Go SDK's project config update notification, once per
        datafile (Tracker is offered one again while the shared store is down)."""
        if config is self._config:
            return
        self._config = config  # always: an older snapshot is not kept alive here
        if not self._subscriptions:
            return
        self._publish(CONFIG_UPDATE, ({"Type": CONFIG_UPDATE, "Revision": config.revision},))

    def experiment_decided(
        self,
        config: ProjectConfig,
        decision: Decision,
        user_id: str,
        attributes: Mapping[str, AttributeValue],
    ) -> None:
        """An experiment's decision (Activate, GetVariation): the Go SDK's ab-test (or, for a
        flag's experiment, feature-test) decision notification, sent with no variation too."""
        if not self._subscriptions:
            return
        experiment, variation = decision.experiment, decision.variation
        info = {"experimentKey": experiment.key}
        if variation is not None:
            info["variationKey"] = variation.key
        feature_test = experiment.id in config.feature_test_ids
        payload = {
            "Type": "feature-test" if feature_test else "ab-test",
            "UserContext": _user_context(user_id, attributes),
            "DecisionInfo": info,
        }
        self._publish(DECISION, (payload,))

    def flags_decided(
        self,
        user_id: str,
        attributes: Mapping[str, AttributeValue],
        decided: Iterable[tuple[FlagDecision, bool]],
    ) -> None:
        """Decide's decisions, (decision, whether its event was recorded) each: the Go SDK's
        flag decision notification for each flag decided (none for an error, as the SDK)."""
        if not self._subscriptions:
            return
        # Written piece by piece: json.dumps of each whole payload cost ~18 us a flag, so a
        # 50-flag Decide took three times as long with one listener; this way ~3 us a flag
        # (in-process, 50-flag datafile: 440 us a Decide unheard, 560 us with a listener).
        head = f'{{"Type":"flag","UserContext":{_json(_user_context(user_id, attributes))},'
        info_of = self._flag_infos.of
        self._publish_json(
            DECISION,
            (
                f'{head}"DecisionInfo":{info_of(decision, sent)}}}'
                for decision, sent in decided
                if decision.error is None
            ),
        )

    def tracked(
        self,
        event: Event,
        user_id: str,
        attributes: Mapping[str, AttributeValue],
        tags: Mapping[str, AttributeValue],
        conversion: records.Conversion,
    ) -> None:
        """A conversion, once committed: the Go SDK's track notification."""
        if not self._subscriptions:
            return
        self._publish(TRACK, (_track_payload(event, user_id, attributes, tags, conversion),))

    def tracked_batch(
        self,
        config: ProjectConfig,
        valid: Sequence[
            tuple[int, Event, str, Mapping[str, AttributeValue], Mapping[str, AttributeValue]]
        ],
        errors: Sequence[tuple[int, object]],
    ) -> None:
        """A TrackStream batch's conversions, once committed: a track notification for each
        of its `valid` events (index, event, user id, attributes, tags) not in `errors`."""
        if not self._subscriptions:
            return
        failed = {index for index, _ in errors}
        self._publish(
            TRACK,
            (
                _track_payload(
                    event,
                    user_id,
                    attributes,
                    tags,
                    _conversion_of(config, event, user_id, attributes, tags),
                )
                for index, event, user_id, attributes, tags in valid
                if index not in failed
            ),
        )


class _FlagInfos:
    """Each flag decision's DecisionInfo as JSON, written once: most decisions are shared,
    built at load (`FeatureFlag.outcomes`), as trackd.rpc.decisions keeps their bytes. Keyed
    by identity, the decision held beside its texts so its id is not reused; bounded, since
    decisions built per call (forced ones) pass through it too."""

    LIMIT: Final = 65_536

    def __init__(self) -> None:
        self._kept: dict[int, tuple[FlagDecision, tuple[str, str]]] = {}

    def of(self, decision: FlagDecision, sent: bool) -> str:
        held = self._kept.get(id(decision))
        if held is not None and held[0] is decision:
            return held[1][sent]
        texts = (_json(_flag_info(decision, False)), _json(_flag_info(decision, True)))
        if not decision.reasons:  # with reasons, built for this call alone
            if len(self._kept) >= self.LIMIT:
                self._kept.clear()
            self._kept[id(decision)] = (decision, texts)
        return texts[sent]


def _flag_info(decision: FlagDecision, sent: bool) -> dict[str, Any]:
    """The Go SDK's FlagNotification DecisionInfo, its keys sorted as Go writes a map."""
    rule, variation = decision.rule, decision.variation
    return {
        "decisionEventDispatched": sent,
        "enabled": decision.enabled,
        "experimentId": rule.id if rule is not None else "",
        "flagKey": decision.flag_key,
        "reasons": list(decision.reasons),
        "ruleKey": rule.key if rule is not None else "",
        "variables": dict(sorted(decision.variables.items())),
        "variationId": variation.id if variation is not None else "",
        "variationKey": variation.key if variation is not None else "",
    }


def _conversion_of(
    config: ProjectConfig,
    event: Event,
    user_id: str,
    attributes: Mapping[str, AttributeValue],
    tags: Mapping[str, AttributeValue],
) -> records.Conversion:
    """The conversion record a batch committed for this event (its uuid and timestamp
    aside, which the notification does not carry)."""
    return records.conversion(config, event, user_id, attributes, parse_tags(tags), (), now_ms=0)


def _track_payload(
    event: Event,
    user_id: str,
    attributes: Mapping[str, AttributeValue],
    tags: Mapping[str, AttributeValue],
    conversion: records.Conversion,
) -> dict[str, Any]:
    """The Go SDK's TrackNotification; its ConversionEvent is the event's part of the Event
    API payload (`entity_id`, `key`, `Attributes`, and `tags`, `revenue`, `value` when set)."""
    converted: dict[str, Any] = {
        "entity_id": event.id,
        "key": event.key,
        "Attributes": [
            {"value": value, "key": key, "type": ATTRIBUTE_TYPE, "entity_id": entity_id}
            for entity_id, key, value in conversion.attributes
        ],
    }
    if conversion.tags:
        converted["tags"] = dict(sorted(conversion.tags.items()))
    if conversion.revenue is not None:
        converted["revenue"] = conversion.revenue
    if conversion.value is not None:
        converted["value"] = conversion.value
    return {
        "EventKey": event.key,
        "UserContext": _user_context(user_id, attributes),
        "EventTags": dict(sorted(tags.items())) if tags else None,
        "ConversionEvent": converted,
    }
