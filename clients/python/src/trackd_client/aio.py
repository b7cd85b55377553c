"""The asyncio client: the same calls as trackd_client.Client, awaitable.

async with AsyncClient("127.0.0.1:50051") as client:
    variation = await client.activate("my_experiment", "user123", {"device": "iPhone"})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

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
from trackd_client.client import DEFAULT_TIMEOUT
from trackd_client.errors import from_rpc_error

_UNSET: Any = object()


class AsyncClient:
    """A grpc.aio connection to trackd; create it inside the running event loop."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        metadata: Sequence[tuple[str, str]] = (),
        wait_for_ready: bool = False,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._metadata = tuple(metadata)
        self._wait_for_ready = wait_for_ready
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(address, options=list(options))
        else:
            self.channel = grpc.aio.secure_channel(address, credentials, options=list(options))
        self.stub = pb_grpc.TrackingServiceStub(self.channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self.channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(
                request,
                timeout=self.timeout if timeout is _UNSET else timeout,
                metadata=self._metadata,
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    async def activate(
        self,
        experiment_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> str | None:
        """The user's variation key (recording an impression), or None if in no variation."""
        response = await self.activate_detail(experiment_key, user_id, attributes, timeout=timeout)
        return variation_or_none(response.variation_key)

    async def activate_detail(
        self,
        experiment_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> pb.ActivateResponse:
        """Activate's whole answer, with attribution_degraded (see Client.activate_detail)."""
        request = pb.ActivateRequest(
            experiment_key=experiment_key, user_id=user_id, attributes=to_value_map(attributes)
        )
        response: pb.ActivateResponse = await self._call(self.stub.Activate, request, timeout)
        return response

    async def get_variation(
        self,
        experiment_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> str | None:
        request = pb.GetVariationRequest(
            experiment_key=experiment_key, user_id=user_id, attributes=to_value_map(attributes)
        )
        response = await self._call(self.stub.GetVariation, request, timeout)
        return variation_or_none(response.variation_key)

    async def decide(
        self,
        user_id: str,
        flag_key: str,
        attributes: Mapping[str, Scalar] | None = None,
        options: Iterable[DecideOption] = (),
        *,
        timeout: float | None = _UNSET,
    ) -> Decision:
        """One flag's Decision (see Client.decide)."""
        decisions = await self.decide_for_keys(
            user_id, [flag_key], attributes, single_flag_options(options), timeout=timeout
        )
        return decisions.get(flag_key) or Decision.dropped(flag_key)

    async def decide_for_keys(
        self,
        user_id: str,
        flag_keys: Sequence[str],
        attributes: Mapping[str, Scalar] | None = None,
        options: Iterable[DecideOption] = (),
        *,
        timeout: float | None = _UNSET,
    ) -> dict[str, Decision]:
        """flag key -> Decision for these flags (see Client.decide_for_keys)."""
        if not flag_keys:
            return {}  # trackd reads no keys as every flag: decide_all says so explicitly
        request = decide_request(user_id, flag_keys, attributes, options)
        return decisions_by_key(await self._call(self.stub.Decide, request, timeout))

    async def decide_all(
        self,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        options: Iterable[DecideOption] = (),
        *,
        timeout: float | None = _UNSET,
    ) -> dict[str, Decision]:
        """flag key -> Decision for every flag of the datafile, in its order."""
        request = decide_request(user_id, [], attributes, options)
        return decisions_by_key(await self._call(self.stub.Decide, request, timeout))

    async def set_forced_decision(
        self,
        user_id: str,
        flag_key: str,
        variation_key: str,
        rule_key: str | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> None:
        """Forces the flag's variation for the user (see Client.set_forced_decision)."""
        request = pb.SetForcedDecisionRequest(
            user_id=user_id, flag_key=flag_key, rule_key=rule_key or "", variation_key=variation_key
        )
        await self._call(self.stub.SetForcedDecision, request, timeout)

    async def get_forced_decision(
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
        response = await self._call(self.stub.GetForcedDecision, request, timeout)
        return variation_or_none(response.variation_key)

    async def remove_forced_decision(
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
        response = await self._call(self.stub.RemoveForcedDecision, request, timeout)
        removed: bool = response.removed
        return removed

    async def remove_all_forced_decisions(
        self, user_id: str, *, timeout: float | None = _UNSET
    ) -> int:
        """Removes every forced decision of the user; returns how many there were."""
        request = pb.RemoveAllForcedDecisionsRequest(user_id=user_id)
        response = await self._call(self.stub.RemoveAllForcedDecisions, request, timeout)
        removed: int = response.removed
        return removed

    async def track(
        self,
        event_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        tags: Mapping[str, Scalar] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> list[Attribution]:
        """Records a conversion; returns the experiments it was attributed to (maybe none)."""
        response = await self.track_detail(event_key, user_id, attributes, tags, timeout=timeout)
        return [Attribution.from_proto(a) for a in response.attributions]

    async def track_detail(
        self,
        event_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        tags: Mapping[str, Scalar] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> pb.TrackResponse:
        """Track's whole answer, with attribution_unknown (see Client.track_detail)."""
        request = pb.TrackRequest(
            event_key=event_key,
            user_id=user_id,
            attributes=to_value_map(attributes),
            tags=to_value_map(tags, "tags"),
        )
        response: pb.TrackResponse = await self._call(self.stub.Track, request, timeout)
        return response

    async def get_config(self, *, timeout: float | None = _UNSET) -> pb.GetConfigResponse:
        response: pb.GetConfigResponse = await self._call(
            self.stub.GetConfig, pb.GetConfigRequest(), timeout
        )
        return response
