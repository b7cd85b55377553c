"""The blocking client: `activate` and `track` as in the Optimizely SDKs, over gRPC."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from trackd_client._proto.v1 import tracking_service_pb2 as pb
from trackd_client._proto.v1 import tracking_service_pb2_grpc as pb_grpc
from trackd_client._types import (
    Attribution,
    DecideOption,
    Decision,
    decide_request,
    decisions_by_key,
    single_flag_options,
    variation_or_none,
)
from trackd_client._values import Scalar, to_value_map
from trackd_client.errors import from_rpc_error

if TYPE_CHECKING:
    from trackd_client.producer import Producer

DEFAULT_TIMEOUT = 5.0
"""Seconds each unary call may take unless `timeout=` says otherwise."""

_UNSET: Any = object()


class Client:
    """A connection to trackd. Thread-safe; use one per process and close it (or use `with`).

        with Client("127.0.0.1:50051") as client:
            variation = client.activate("my_experiment", "user123", {"device": "iPhone"})
            client.track("my_conversion", "user123", {"device": "iPhone"}, {"revenue": 4200})

    address: "host:port" (any gRPC target). timeout: default deadline in seconds for each
    call (None: no deadline). credentials: grpc.ChannelCredentials for TLS (default:
    plaintext). options: extra channel options. metadata: sent with every call.
    channel: use an existing grpc.Channel instead (it is not closed by close()).
    """

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        metadata: Sequence[tuple[str, str]] = (),
        wait_for_ready: bool = False,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._metadata = tuple(metadata)
        self._wait_for_ready = wait_for_ready
        self._owns_channel = channel is None
        if channel is None:
            if credentials is None:
                channel = grpc.insecure_channel(address, options=list(options))
            else:
                channel = grpc.secure_channel(address, credentials, options=list(options))
        self.channel = channel
        self.stub = pb_grpc.TrackingServiceStub(channel)  # type: ignore[no-untyped-call]
        """The generated stub, for RPCs or fields the wrapper does not cover."""

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(
                request,
                timeout=self.timeout if timeout is _UNSET else timeout,
                metadata=self._metadata,
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    # -- decisions ----------------------------------------------------------------------

    def activate(
        self,
        experiment_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> str | None:
        """The user's variation key (recording an impression), or None if in no variation."""
        return variation_or_none(
            self.activate_detail(experiment_key, user_id, attributes, timeout=timeout).variation_key
        )

    def activate_detail(
        self,
        experiment_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> pb.ActivateResponse:
        """Activate's whole answer: variation, ids, reason, impression_recorded, revision.

        `attribution_degraded` is True when a store the call needed could not be used: the
        override store (Redis) unreachable, so the user's forced variation was ignored; or the
        activation store unreachable (Redis) or full (local LMDB), so this activation is not
        remembered (later conversions will not be attributed to it) and the impression may
        repeat one already sent.
        """
        request = pb.ActivateRequest(
            experiment_key=experiment_key, user_id=user_id, attributes=to_value_map(attributes)
        )
        response: pb.ActivateResponse = self._call(self.stub.Activate, request, timeout)
        return response

    def get_variation(
        self,
        experiment_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> str | None:
        """The same decision as activate, without an impression or activation; None if none."""
        request = pb.GetVariationRequest(
            experiment_key=experiment_key, user_id=user_id, attributes=to_value_map(attributes)
        )
        response: pb.GetVariationResponse = self._call(self.stub.GetVariation, request, timeout)
        return variation_or_none(response.variation_key)

    # -- feature flags ------------------------------------------------------------------

    def decide(
        self,
        user_id: str,
        flag_key: str,
        attributes: Mapping[str, Scalar] | None = None,
        options: Iterable[DecideOption] = (),
        *,
        timeout: float | None = _UNSET,
    ) -> Decision:
        """One flag's Decision, as the SDKs' user_context.decide(flag_key).

        An unknown flag key does not raise: the Decision carries `error`, enabled False. As the
        SDK's decide, it ignores ENABLED_FLAGS_ONLY; should trackd's --default-decide-options
        drop the disabled flag anyway, a bare disabled Decision stands in for it.
        """
        decisions = self.decide_for_keys(
            user_id, [flag_key], attributes, single_flag_options(options), timeout=timeout
        )
        return decisions.get(flag_key) or Decision.dropped(flag_key)

    def decide_for_keys(
        self,
        user_id: str,
        flag_keys: Sequence[str],
        attributes: Mapping[str, Scalar] | None = None,
        options: Iterable[DecideOption] = (),
        *,
        timeout: float | None = _UNSET,
    ) -> dict[str, Decision]:
        """flag key -> Decision for these flags, in order (ENABLED_FLAGS_ONLY drops disabled)."""
        if not flag_keys:
            return {}  # trackd reads no keys as every flag: decide_all says so explicitly
        return self._decide(decide_request(user_id, flag_keys, attributes, options), timeout)

    def decide_all(
        self,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        options: Iterable[DecideOption] = (),
        *,
        timeout: float | None = _UNSET,
    ) -> dict[str, Decision]:
        """flag key -> Decision for every flag of the datafile, in its order."""
        return self._decide(decide_request(user_id, [], attributes, options), timeout)

    def _decide(self, request: pb.DecideRequest, timeout: float | None) -> dict[str, Decision]:
        return decisions_by_key(self._call(self.stub.Decide, request, timeout))

    def set_forced_decision(
        self,
        user_id: str,
        flag_key: str,
        variation_key: str,
        rule_key: str | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> None:
        """Forces the flag's variation for the user: for one rule, or (no rule_key) the flag."""
        request = pb.SetForcedDecisionRequest(
            user_id=user_id, flag_key=flag_key, rule_key=rule_key or "", variation_key=variation_key
        )
        self._call(self.stub.SetForcedDecision, request, timeout)

    def get_forced_decision(
        self,
        user_id: str,
        flag_key: str,
        rule_key: str | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> str | None:
        """The variation key forced for the flag (or rule), None when none is."""
        request = pb.GetForcedDecisionRequest(
            user_id=user_id, flag_key=flag_key, rule_key=rule_key or ""
        )
        return variation_or_none(
            self._call(self.stub.GetForcedDecision, request, timeout).variation_key
        )

    def remove_forced_decision(
        self,
        user_id: str,
        flag_key: str,
        rule_key: str | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> bool:
        """Removes one forced decision; True when there was one."""
        request = pb.RemoveForcedDecisionRequest(
            user_id=user_id, flag_key=flag_key, rule_key=rule_key or ""
        )
        removed: bool = self._call(self.stub.RemoveForcedDecision, request, timeout).removed
        return removed

    def remove_all_forced_decisions(self, user_id: str, *, timeout: float | None = _UNSET) -> int:
        """Removes every forced decision of the user; returns how many there were."""
        request = pb.RemoveAllForcedDecisionsRequest(user_id=user_id)
        removed: int = self._call(self.stub.RemoveAllForcedDecisions, request, timeout).removed
        return removed

    # -- conversions --------------------------------------------------------------------

    def track(
        self,
        event_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        tags: Mapping[str, Scalar] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> list[Attribution]:
        """Records a conversion; returns the experiments it was attributed to (maybe none).

        An empty list may also mean trackd could not reach its activation store: use
        track_detail to tell the two apart (`attribution_unknown`).
        """
        response = self.track_detail(event_key, user_id, attributes, tags, timeout=timeout)
        return [Attribution.from_proto(a) for a in response.attributions]

    def track_detail(
        self,
        event_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        tags: Mapping[str, Scalar] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> pb.TrackResponse:
        """Track's whole answer: attributions, uuid and attribution_unknown.

        `attribution_unknown` is True when trackd could not read its activation store (Redis):
        the conversion was recorded, but without attributions, so an empty
        `attributions` does not mean the user was in no experiment.
        """
        request = pb.TrackRequest(
            event_key=event_key,
            user_id=user_id,
            attributes=to_value_map(attributes),
            tags=to_value_map(tags, "tags"),
        )
        response: pb.TrackResponse = self._call(self.stub.Track, request, timeout)
        return response

    def producer(self, **kwargs: Any) -> Producer:
        """A batching TrackStream Producer on this client's channel (see trackd_client.Producer)."""
        from trackd_client.producer import Producer

        return Producer(self, **kwargs)

    # -- forced variations, config, results ---------------------------------------------

    def set_forced_variation(
        self,
        experiment_key: str,
        user_id: str,
        variation_key: str | None,
        *,
        timeout: float | None = _UNSET,
    ) -> str | None:
        """Forces the user into a variation; None clears the forcing."""
        request = pb.SetForcedVariationRequest(
            experiment_key=experiment_key, user_id=user_id, variation_key=variation_key or ""
        )
        response = self._call(self.stub.SetForcedVariation, request, timeout)
        return variation_or_none(response.variation_key)

    def get_forced_variation(
        self, experiment_key: str, user_id: str, *, timeout: float | None = _UNSET
    ) -> str | None:
        request = pb.GetForcedVariationRequest(experiment_key=experiment_key, user_id=user_id)
        response = self._call(self.stub.GetForcedVariation, request, timeout)
        return variation_or_none(response.variation_key)

    def get_config(self, *, timeout: float | None = _UNSET) -> pb.GetConfigResponse:
        response: pb.GetConfigResponse = self._call(
            self.stub.GetConfig, pb.GetConfigRequest(), timeout
        )
        return response

    def get_experiment_results(
        self, experiment_key: str, *, timeout: float | None = _UNSET
    ) -> pb.GetExperimentResultsResponse:
        request = pb.GetExperimentResultsRequest(experiment_key=experiment_key)
        response: pb.GetExperimentResultsResponse = self._call(
            self.stub.GetExperimentResults, request, timeout
        )
        return response
