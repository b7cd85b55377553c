"""The gRPC servicer: protobuf in, domain call, protobuf out. No decisions, SQL or HTTP here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from trackd import errors
from trackd.datafile.model import FeatureFlag
from trackd.decision.engine import Decision, Reason
from trackd.decision.flags import DecideOption
from trackd.live import Snapshot
from trackd.overrides import NO_OVERRIDES, DecisionContext
from trackd.rpc import status, values, wire
from trackd.rpc.decisions import DecideEncoder
from trackd.rpc.interceptors import registered_handlers
from trackd.tracking import Attributed, BatchItem, Tracker
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

log = structlog.get_logger("trackd.rpc")

_REASONS = {
    Reason.BUCKETED: pb.DECISION_REASON_BUCKETED,
    Reason.FORCED: pb.DECISION_REASON_FORCED,
    Reason.WHITELISTED: pb.DECISION_REASON_WHITELISTED,
    Reason.STICKY: pb.DECISION_REASON_STICKY,
    Reason.NOT_RUNNING: pb.DECISION_REASON_NOT_RUNNING,
    Reason.AUDIENCE_MISMATCH: pb.DECISION_REASON_AUDIENCE_MISMATCH,
    Reason.OUTSIDE_TRAFFIC: pb.DECISION_REASON_OUTSIDE_TRAFFIC,
    Reason.NOT_IN_GROUP_SLOT: pb.DECISION_REASON_NOT_IN_GROUP_SLOT,
}

_DECIDE_OPTIONS = {
    pb.DECIDE_OPTION_DISABLE_DECISION_EVENT: DecideOption.DISABLE_DECISION_EVENT,
    pb.DECIDE_OPTION_ENABLED_FLAGS_ONLY: DecideOption.ENABLED_FLAGS_ONLY,
    pb.DECIDE_OPTION_IGNORE_USER_PROFILE_SERVICE: DecideOption.IGNORE_USER_PROFILE_SERVICE,
    pb.DECIDE_OPTION_INCLUDE_REASONS: DecideOption.INCLUDE_REASONS,
    pb.DECIDE_OPTION_EXCLUDE_VARIABLES: DecideOption.EXCLUDE_VARIABLES,
}

Reply = TypeVar("Reply")

# Batches of one TrackStream being validated or committed at once: enough to overlap one
# batch's Python work with the previous one's disk commit, few enough to bound memory.
STREAM_BATCHES_IN_FLIGHT = 4


async def _answer(
    context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Reply]]
) -> Reply:
    """Runs a domain call; expected errors abort with their mapped status, others as INTERNAL."""
    try:
        return await call()
    except errors.TrackdError as error:
        await status.abort(context, error)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("rpc_failed")
        await status.abort_internal(context)
    raise AssertionError("unreachable: context.abort raises")


class TrackingServicer(pb_grpc.TrackingServiceServicer):
    def __init__(self, tracker: Tracker, limits: values.Limits, max_stream_batch: int) -> None:
        self._tracker = tracker
        self._limits = limits
        self._max_stream_batch = max_stream_batch
        # TrackStream events arrive raw (trackd.rpc.wire): each distinct map is decoded once.
        self._stream_events = wire.EventReader(limits)
        self._decide_encoder = DecideEncoder()

    # -- translation helpers -------------------------------------------------------------

    def _decision_fields(self, decision: Decision) -> dict[str, Any]:
        variation = decision.variation
        return {
            "variation_key": variation.key if variation else "",
            "variation_id": variation.id if variation else "",
            "experiment_id": decision.experiment.id,
            "experiment_key": decision.experiment.key,
            "reason": _REASONS[decision.reason],
        }

    def _decision_input(
        self, request: pb.ActivateRequest | pb.GetVariationRequest
    ) -> tuple[str, str, dict[str, Any]]:
        limits = self._limits
        return (
            values.require_key(request.experiment_key, "experiment_key", limits),
            values.require_user_id(request.user_id, limits),
            values.plain_map(request.attributes, limits, "attribute"),
        )

    @staticmethod
    def _attributions(attributed: tuple[Attributed, ...]) -> list[pb.Attribution]:
        return [
            pb.Attribution(
                experiment_key=a.experiment_key,
                variation_key=a.variation_key,
                experiment_id=a.experiment_id,
                variation_id=a.variation_id,
            )
            for a in attributed
        ]

    @staticmethod
    def _decide_options(request: pb.DecideRequest) -> set[DecideOption]:
        chosen = set()
        for number in request.options:
            if number == pb.DECIDE_OPTION_UNSPECIFIED:
                continue
            option = _DECIDE_OPTIONS.get(number)
            if option is None:
                raise errors.InvalidArgument(f"unknown decide option {number}")
            chosen.add(option)
        return chosen

    def _forced_decision_input(
        self,
        request: pb.GetForcedDecisionRequest
        | pb.SetForcedDecisionRequest
        | pb.RemoveForcedDecisionRequest,
    ) -> tuple[str, str, str | None]:
        """(user id, flag key, rule key or None for the whole flag)."""
        limits = self._limits
        rule_key = request.rule_key
        if rule_key:
            values.require_key(rule_key, "rule_key", limits)
        return (
            values.require_user_id(request.user_id, limits),
            values.require_key(request.flag_key, "flag_key", limits),
            rule_key or None,
        )

    # -- RPCs ----------------------------------------------------------------------------

    async def Activate(
        self, request: pb.ActivateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ActivateResponse:
        async def call() -> pb.ActivateResponse:
            experiment_key, user_id, attributes = self._decision_input(request)
            activation = await self._tracker.activate(experiment_key, user_id, attributes)
            return pb.ActivateResponse(
                **self._decision_fields(activation.decision),
                impression_recorded=activation.impression_recorded,
                revision=activation.revision,
                attribution_degraded=activation.attribution_degraded,
            )

        return await _answer(context, call)

    async def GetVariation(
        self, request: pb.GetVariationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetVariationResponse:
        async def call() -> pb.GetVariationResponse:
            experiment_key, user_id, attributes = self._decision_input(request)
            decision, revision = await self._tracker.get_variation(
                experiment_key, user_id, attributes
            )
            return pb.GetVariationResponse(**self._decision_fields(decision), revision=revision)

        return await _answer(context, call)

    async def Track(
        self, request: pb.TrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TrackResponse:
        async def call() -> pb.TrackResponse:
            tracked = await self._tracker.track(wire.track_input(request, self._limits))
            return pb.TrackResponse(
                attributions=self._attributions(tracked.attributions),
                uuid=tracked.uuid,
                attribution_unknown=tracked.attribution_unknown,
            )

        return await _answer(context, call)

    async def TrackStream(
        self,
        request_iterator: AsyncIterator[pb.TrackStreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.TrackStreamResponse]:
        # A reader task turns batches into commits while earlier ones are still on disk, with
        # at most STREAM_BATCHES_IN_FLIGHT queued: a producer faster than the disk fills the
        # queue, the reader stops reading, and HTTP/2 flow control holds the producer back.
        # Acknowledgements leave in the order the batches came.
        queue: asyncio.Queue[asyncio.Future[pb.TrackStreamResponse] | None] = asyncio.Queue(
            STREAM_BATCHES_IN_FLIGHT
        )

        async def read() -> None:
            try:
                async for batch in request_iterator:
                    await queue.put(asyncio.ensure_future(self._store_batch(batch)))
            finally:
                await queue.put(None)

        reader = asyncio.create_task(read(), name="trackd-stream-reader")
        try:
            while (acknowledgement := await queue.get()) is not None:
                yield await acknowledgement
            await reader  # re-raises a failed read (a broken stream)
        finally:
            reader.cancel()
            while not queue.empty():
                pending = queue.get_nowait()
                if pending is not None:
                    pending.cancel()

    async def _store_batch(self, batch: Any) -> pb.TrackStreamResponse:
        """Validates, attributes and commits one `wire.TrackStreamRequestView` batch."""
        sequence = batch.sequence
        events = batch.events
        if len(events) > self._max_stream_batch:
            too_large = errors.BatchTooLarge(len(events), self._max_stream_batch)
            return pb.TrackStreamResponse(
                sequence=sequence, code=status.number_for(too_large), message=str(too_large)
            )
        try:
            key = wire.batch_key(batch)
            # Each event read as Track reads its request, from the raw bytes (trackd.rpc.wire).
            items: list[BatchItem] = self._stream_events.read_batch(events)
            outcome = await self._tracker.track_batch(items, key)
        except errors.TrackdError as error:
            return pb.TrackStreamResponse(
                sequence=sequence, code=status.number_for(error), message=str(error)
            )
        return pb.TrackStreamResponse(
            sequence=sequence,
            accepted=outcome.accepted,
            attributed=outcome.attributed,
            attribution_unknown=outcome.attribution_unknown,
            errors=[
                pb.EventError(index=index, code=status.number_for(error), message=str(error))
                for index, error in outcome.errors
            ],
            duplicate=outcome.duplicate,
        )

    async def GetExperimentResults(
        self, request: pb.GetExperimentResultsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetExperimentResultsResponse:
        async def call() -> pb.GetExperimentResultsResponse:
            key = values.require_key(request.experiment_key, "experiment_key", self._limits)
            answer = await self._tracker.results(key)
            results = answer.results
            return pb.GetExperimentResultsResponse(
                fleet_wide=answer.fleet_wide,
                experiment_key=results.experiment_key,
                experiment_id=results.experiment_id,
                variations=[
                    pb.VariationResults(
                        variation_key=v.variation_key,
                        variation_id=v.variation_id,
                        visitors=v.visitors,
                        events=[
                            pb.EventResults(
                                event_key=e.event_key,
                                converters=e.converters,
                                conversions=e.conversions,
                                revenue=e.revenue,
                                value=e.value,
                            )
                            for e in v.events
                        ],
                    )
                    for v in results.variations
                ],
            )

        return await _answer(context, call)

    async def SetForcedVariation(
        self, request: pb.SetForcedVariationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SetForcedVariationResponse:
        async def call() -> pb.SetForcedVariationResponse:
            key = values.require_key(request.experiment_key, "experiment_key", self._limits)
            user_id = values.require_user_id(request.user_id, self._limits)
            forced = await self._tracker.set_forced_variation(key, user_id, request.variation_key)
            return pb.SetForcedVariationResponse(variation_key=forced or "")

        return await _answer(context, call)

    async def GetForcedVariation(
        self, request: pb.GetForcedVariationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetForcedVariationResponse:
        async def call() -> pb.GetForcedVariationResponse:
            key = values.require_key(request.experiment_key, "experiment_key", self._limits)
            user_id = values.require_user_id(request.user_id, self._limits)
            forced = await self._tracker.get_forced_variation(key, user_id)
            return pb.GetForcedVariationResponse(variation_key=forced or "")

        return await _answer(context, call)

    async def Decide(
        self,
        request: pb.DecideRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        *,
        forced_decisions: Mapping[DecisionContext, str] = NO_OVERRIDES.decisions,
    ) -> bytes:
        """Answers the DecideResponse already serialized (`trackd.rpc.decisions`).
        `forced_decisions` are one call's own, from Agent's `/v1/decide` body (Tracker.decide)."""

        async def call() -> bytes:
            user_id = values.require_user_id(request.user_id, self._limits)
            attributes = values.plain_map(request.attributes, self._limits, "attribute")
            decided = await self._tracker.decide(
                user_id,
                attributes,
                list(request.flag_keys),
                self._decide_options(request),
                forced_decisions=forced_decisions,
            )
            return self._decide_encoder.response(decided.pairs, decided.revision)

        return await _answer(context, call)

    async def SetForcedDecision(
        self, request: pb.SetForcedDecisionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SetForcedDecisionResponse:
        async def call() -> pb.SetForcedDecisionResponse:
            user_id, flag_key, rule_key = self._forced_decision_input(request)
            variation_key = values.require_key(request.variation_key, "variation_key", self._limits)
            await self._tracker.set_forced_decision(user_id, flag_key, rule_key, variation_key)
            return pb.SetForcedDecisionResponse()

        return await _answer(context, call)

    async def GetForcedDecision(
        self, request: pb.GetForcedDecisionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetForcedDecisionResponse:
        async def call() -> pb.GetForcedDecisionResponse:
            forced = await self._tracker.get_forced_decision(*self._forced_decision_input(request))
            return pb.GetForcedDecisionResponse(variation_key=forced or "")

        return await _answer(context, call)

    async def RemoveForcedDecision(
        self, request: pb.RemoveForcedDecisionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RemoveForcedDecisionResponse:
        async def call() -> pb.RemoveForcedDecisionResponse:
            removed = await self._tracker.remove_forced_decision(
                *self._forced_decision_input(request)
            )
            return pb.RemoveForcedDecisionResponse(removed=removed)

        return await _answer(context, call)

    async def RemoveAllForcedDecisions(
        self,
        request: pb.RemoveAllForcedDecisionsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.RemoveAllForcedDecisionsResponse:
        async def call() -> pb.RemoveAllForcedDecisionsResponse:
            user_id = values.require_user_id(request.user_id, self._limits)
            return pb.RemoveAllForcedDecisionsResponse(
                removed=await self._tracker.remove_all_forced_decisions(user_id)
            )

        return await _answer(context, call)

    async def GetConfig(
        self, request: pb.GetConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetConfigResponse:
        return config_message(self._tracker.live.snapshot)

    async def WatchConfig(
        self, request: pb.WatchConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchConfigResponse]:
        async for snapshot in self._tracker.live.watch():
            yield pb.WatchConfigResponse(config=config_message(snapshot))


def handlers(servicer: TrackingServicer) -> list[tuple[str, dict[str, Any]]]:
    """The generated registration's (service, handlers), but TrackStream batches are
    parsed as `wire.TrackStreamRequestView` (the same bytes, events left raw)."""
    ((service, generated),) = registered_handlers(
        partial(pb_grpc.add_TrackingServiceServicer_to_server, servicer)
    )
    found = dict(generated)
    found["TrackStream"] = found["TrackStream"]._replace(
        request_deserializer=wire.TrackStreamRequestView.FromString
    )
    return [(service, found)]


def config_message(snapshot: Snapshot) -> pb.GetConfigResponse:
    config = snapshot.config
    loaded_at = Timestamp()
    loaded_at.FromNanoseconds(int(snapshot.loaded_at * 1e9))
    return pb.GetConfigResponse(
        revision=config.revision,
        account_id=config.account_id,
        project_id=config.project_id,
        datafile_version=config.version,
        loaded_at=loaded_at,
        experiments=[
            pb.Experiment(
                id=e.id,
                key=e.key,
                status=e.status,
                running=e.is_running,
                group_id=e.group_id or "",
                layer_id=e.layer_id,
                variations=[pb.Variation(id=v.id, key=v.key) for v in e.variations],
            )
            for e in config.experiments_by_id.values()
        ],
        events=[
            pb.Event(id=e.id, key=e.key, experiment_ids=sorted(e.experiment_ids))
            for e in config.events_by_key.values()
        ],
        attributes=[pb.Attribute(id=a.id, key=a.key) for a in config.attributes_by_key.values()],
        flags=[_flag_message(config.flags_by_key[key]) for key in config.flag_keys],
    )


def _flag_message(flag: FeatureFlag) -> pb.Flag:
    """A flag with its rules in decision order: feature tests, then delivery rules."""
    rules = [(test, pb.RULE_TYPE_FEATURE_TEST) for test in flag.experiments]
    if flag.rollout is not None:
        rules.extend((rule, pb.RULE_TYPE_ROLLOUT) for rule in flag.rollout.rules)
    return pb.Flag(
        id=flag.id,
        key=flag.key,
        rules=[
            pb.FlagRule(
                id=rule.id,
                key=rule.key,
                type=rule_type,
                variations=[pb.Variation(id=v.id, key=v.key) for v in rule.variations],
            )
            for rule, rule_type in rules
        ],
        variables=[
            pb.FlagVariable(
                id=v.id, key=v.key, type=v.type, default_value=values.json_value(v.default_value)
            )
            for v in flag.variables
        ],
    )
