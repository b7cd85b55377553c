"""Optimizely Agent's REST API v1 on the HTTP port, so a client written against Agent changes
only the URL it calls: the paths, query parameters, JSON field names and statuses of Agent's
OpenAPI description (`api/openapi-spec/openapi.yaml` in optimizely/agent). Served so far:
`/v1/activate`, `/v1/track`, `/v1/decide`, `/v1/override`, `/v1/datafile`, `/v1/config`,
`/v1/notifications/event-stream` (trackd.rpc.agent_event_stream), and, as Agent answers them
with the service off, `/v1/lookup`, `/v1/save` (no user profile service) and
`/v1/send-odp-event` (no ODP); `/v1/batch` is in front of them (trackd.agent_batch).

Each call is the gRPC servicer's own, its protobuf request built from Agent's JSON: the same
decisions, validation and limits as gRPC and Connect, and errors from trackd.rpc.status
(`{"error": message}` with the HTTP status of the code). Where the description is silent,
this does what Agent does: an unknown experiment, feature or event key is a 200 whose
`error` says so, and a missing `userId` or `X-Optimizely-SDK-Key` is a 400.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import structlog
from connectrpc.errors import ConnectError
from google.protobuf import json_format

from trackd.asgi import Receive, Scope, Send, read_body
from trackd.datafile.model import ProjectConfig
from trackd.errors import InvalidArgument, MessageTooLarge, PermissionDenied, TrackdError
from trackd.live import LiveConfig
from trackd.notifications import Notifier
from trackd.optimizely_config import optimizely_config
from trackd.overrides import DecisionContext
from trackd.rpc import status, values
from trackd.rpc.agent_decide import AgentDecideJson
from trackd.rpc.agent_event_stream import EVENT_STREAM_PATH, EventStream, chosen_types
from trackd.rpc.connect import as_message, reply_type
from trackd.rpc.decisions import CACHE_LIMIT
from trackd.rpc.interceptors import TRACKING_SERVICE, Method, RpcInterceptor
from trackd.rpc.servicer import TrackingServicer
from trackd.v1 import tracking_service_pb2 as pb

log = structlog.get_logger("trackd.agent")

SDK_KEY_HEADER = "x-optimizely-sdk-key"
# Agent's decideOptions are the SDK's names, ours without their DECIDE_OPTION_ prefix.
DECIDE_OPTIONS = frozenset(
    option.name.removeprefix("DECIDE_OPTION_")
    for option in pb.DecideOption.DESCRIPTOR.values
    if option.number != pb.DECIDE_OPTION_UNSPECIFIED
)

Json = dict[str, Any]


class AgentError(Exception):
    """An answer other than 200: Agent's `{"error": message}` with `status`."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.status = http_status


@dataclass(frozen=True, slots=True)
class Printed:
    """An answer already printed as JSON (/v1/decide's, trackd.rpc.agent_decide)."""

    body: bytes


def _refused(error: TrackdError) -> AgentError:
    connect = status.connect_error(error)
    return AgentError(status.http_status(connect), connect.message)


@dataclass(frozen=True, slots=True)
class Call:
    query: Mapping[str, list[str]]
    body: Json

    def flag(self, name: str) -> bool:
        """A boolean query parameter as Agent reads one: only `true` is true."""
        return self.query.get(name, [""])[0] == "true"

    def user(self) -> tuple[str, dict[str, Any]]:
        user_id = self.body.get("userId")
        if not user_id:
            raise _refused(InvalidArgument('missing "userId" in request payload'))
        return user_id, self.body.get("userAttributes") or {}


def _message(message_type: type[Any], fields: Json) -> Any:
    """A protobuf request from JSON-shaped fields; a wrong JSON type is a 400."""
    try:
        return json_format.ParseDict(fields, message_type())
    except json_format.ParseError as error:
        raise _refused(InvalidArgument(str(error))) from None


def _forced_decisions(given: Any) -> dict[DecisionContext, str]:
    """A body's `forcedDecisions` as Agent reads them into its user context: Go's decoder
    takes a missing or null field or entry as empty, refuses any other type with Agent's
    400, and a later entry for the same flag and rule replaces an earlier one. An empty
    `ruleKey` forces the whole flag; an empty or unknown `variationKey` is kept and ignored
    when deciding, with the SDK's "Invalid variation" reason."""
    if given is None:
        return {}
    if not isinstance(given, list):
        raise _refused(InvalidArgument("error parsing request body"))
    forced: dict[DecisionContext, str] = {}
    for entry in given:
        entry = {} if entry is None else entry
        if not isinstance(entry, dict):
            raise _refused(InvalidArgument("error parsing request body"))
        flag_key, rule_key, variation_key = (
            "" if entry.get(name) is None else entry[name]
            for name in ("flagKey", "ruleKey", "variationKey")
        )
        if not all(isinstance(key, str) for key in (flag_key, rule_key, variation_key)):
            raise _refused(InvalidArgument("error parsing request body"))
        forced[(flag_key, rule_key or None)] = variation_key
    return forced


class AgentApi:
    """The ASGI application of the `/v1/` paths."""

    def __init__(
        self,
        servicer: TrackingServicer,
        interceptor: RpcInterceptor,
        live: LiveConfig,
        *,
        sdk_key: str,
        max_body_bytes: int,
        notifier: Notifier,
    ) -> None:
        self._servicer = servicer
        self._notifier = notifier
        self._interceptor = interceptor
        self._live = live
        self._sdk_key = sdk_key
        self._max_body_bytes = max_body_bytes
        # path -> (its HTTP method, the RPC whose token scope it needs, its handler)
        self._routes: dict[str, tuple[str, Method, Callable[[Call], Awaitable[Any]]]] = {
            "/v1/activate": ("POST", self._method("Activate"), self._activate),
            "/v1/track": ("POST", self._method("Track"), self._track),
            "/v1/decide": ("POST", self._method("Decide"), self._decide),
            "/v1/override": ("POST", self._method("SetForcedVariation"), self._override),
            "/v1/datafile": ("GET", self._method("GetConfig"), self._datafile),
            "/v1/config": ("GET", self._method("GetConfig"), self._config),
            "/v1/lookup": ("POST", self._method("Decide"), self._no_user_profile_service),
            "/v1/save": ("POST", self._method("SetForcedVariation"), self._no_user_profile_service),
            "/v1/send-odp-event": ("POST", self._method("Track"), self._send_odp_event),
            # Every user's decisions and conversions: the admin scope, as forcing them.
            EVENT_STREAM_PATH: ("GET", self._method("SetForcedVariation"), self._event_stream),
        }
        self._views: tuple[ProjectConfig, Json, Json] | None = None  # see _views_of_config
        self._variables = values.KeptStructs(values.plain_struct, CACHE_LIMIT)
        self._decide_json = AgentDecideJson()

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(self._routes)

    @staticmethod
    def _method(rpc: str) -> Method:
        """The RPC whose token scope an endpoint needs."""
        return Method.parse(f"/{TRACKING_SERVICE}/{rpc}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            answer = await self._answer(scope, receive)
            code = 200
            if isinstance(answer, EventStream):
                await answer.run(receive, send)
                return
        except AgentError as error:
            answer, code = {"error": str(error)}, error.status
        except Exception:
            log.exception("agent_api_failed", path=scope.get("path"))
            answer, code = {"error": "internal error; see the daemon's log"}, 500
        body = answer.body if isinstance(answer, Printed) else json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, receive: Receive) -> Any:
        route = self._routes.get(scope["path"])
        if route is None:
            raise AgentError(404, "404 page not found")
        http_method, method, handler = route
        if scope["method"] != http_method:
            raise AgentError(405, "method not allowed")
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        self._admit(method, headers)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        body = await self._body(receive)
        content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if body and content_type != "application/json":
            # As Agent's router answers a POST with a body of another type.
            raise AgentError(415, f"Unsupported Media Type: {content_type or '(none)'}")
        return await handler(Call(query, self._json(body)))

    def _admit(self, method: Method, headers: Mapping[str, str]) -> None:
        sdk_key = headers.get(SDK_KEY_HEADER, "")
        if not sdk_key:
            raise _refused(InvalidArgument("missing required X-Optimizely-SDK-Key header"))
        if self._sdk_key and sdk_key != self._sdk_key:
            raise _refused(PermissionDenied("this daemon serves another SDK key's datafile"))
        denial = self._interceptor.deny(method, headers.get("authorization"))
        if denial is not None:
            raise _refused(denial)

    async def _body(self, receive: Receive) -> bytes:
        body = await read_body(receive, self._max_body_bytes)
        if body is None:
            raise _refused(MessageTooLarge(self._max_body_bytes))
        return body

    @staticmethod
    def _json(data: bytes) -> Json:
        if not data:
            return {}
        try:
            body = json.loads(data)
        except ValueError:
            raise _refused(InvalidArgument("error parsing request body")) from None
        if body is None:  # `null` reads as an empty object, as Go reads it into a struct
            return {}
        if not isinstance(body, dict):
            raise _refused(InvalidArgument("error parsing request body"))
        return body

    async def _reply(self, rpc: str, request: Any, **extra: Any) -> Any:
        """The servicer's reply as it answers it (Decide's serialized)."""
        try:
            return await getattr(self._servicer, rpc)(request, status.CONNECT_CONTEXT, **extra)
        except ConnectError as error:
            raise AgentError(status.http_status(error), error.message) from None

    async def _call(self, rpc: str, request: Any, **extra: Any) -> Any:
        """The servicer's reply as a message."""
        return as_message(await self._reply(rpc, request, **extra), reply_type(rpc))

    # -- /v1/activate --------------------------------------------------------------------

    async def _activate(self, call: Call) -> list[Json]:
        user_id, attributes = call.user()
        config = self._live.config
        chosen: dict[str, str] = {}  # key -> "experiment" or "feature", in the order asked
        for kind in call.query.get("type", []):
            if kind == "experiment":
                chosen.update(dict.fromkeys(config.experiments_by_key, "experiment"))
            elif kind == "feature":
                chosen.update(dict.fromkeys(config.flag_keys, "feature"))
            else:
                raise _refused(InvalidArgument(f'type "{kind}" not supported'))
        chosen.update(dict.fromkeys(call.query.get("experimentKey", []), "experiment"))
        chosen.update(dict.fromkeys(call.query.get("featureKey", []), "feature"))
        track = not call.flag("disableTracking")
        decisions = []
        for key, kind in chosen.items():
            if kind == "experiment":
                decisions.append(await self._experiment(key, user_id, attributes, track))
            else:
                decisions.append(await self._feature(key, user_id, attributes, track))
        enabled = call.query.get("enabled", [""])[0]
        if enabled in ("true", "false"):
            decisions = [d for d in decisions if d["enabled"] == (enabled == "true")]
        return decisions

    async def _experiment(self, key: str, user_id: str, attributes: Json, track: bool) -> Json:
        decision: Json = {"userId": user_id, "experimentKey": key, "featureKey": ""}
        if key not in self._live.config.experiments_by_key:
            return _not_found(decision, "experimentKey")
        fields = {"experimentKey": key, "userId": user_id, "attributes": attributes}
        if track:
            reply = await self._call("Activate", _message(pb.ActivateRequest, fields))
        else:
            reply = await self._call("GetVariation", _message(pb.GetVariationRequest, fields))
        return {
            **decision,
            "variationKey": reply.variation_key,
            "type": "experiment",
            "variables": {},
            "enabled": bool(reply.variation_key),
        }

    async def _feature(self, key: str, user_id: str, attributes: Json, track: bool) -> Json:
        decision: Json = {"userId": user_id, "experimentKey": "", "featureKey": key}
        if key not in self._live.config.flags_by_key:
            return _not_found(decision, "featureKey")
        options = [] if track else ["DECIDE_OPTION_DISABLE_DECISION_EVENT"]
        fields = {
            "userId": user_id,
            "attributes": attributes,
            "flagKeys": [key],
            "options": options,
        }
        [flag] = (await self._call("Decide", _message(pb.DecideRequest, fields))).decisions
        return {
            **decision,
            "experimentKey": flag.rule_key,
            "variationKey": flag.variation_key,
            "type": "feature",
            "variables": self._variables(flag.variables),
            "enabled": flag.enabled,
        }

    # -- /v1/track -----------------------------------------------------------------------

    async def _track(self, call: Call) -> Json:
        event_key = call.query.get("eventKey", [""])[0]
        if not event_key:
            raise _refused(InvalidArgument("missing required path parameter: eventKey"))
        user_id = call.body.get("userId") or ""
        tracked: Json = {"userId": user_id, "eventKey": event_key}
        if event_key not in self._live.config.events_by_key:
            return {**tracked, "error": f"Event with key {event_key} not found"}
        fields = {
            "eventKey": event_key,
            "userId": user_id,
            "attributes": call.body.get("userAttributes") or {},
            "tags": call.body.get("eventTags") or {},
        }
        await self._call("Track", _message(pb.TrackRequest, fields))
        return tracked

    # -- /v1/override and /v1/datafile -----------------------------------------------------

    async def _override(self, call: Call) -> Json:
        """As Agent: an empty variationKey removes the user's override; an unknown
        experiment or variation is a 200 whose messages say so (nothing is stored)."""
        user_id = call.body.get("userId")
        if not user_id:
            raise _refused(InvalidArgument("userId cannot be empty"))
        experiment_key = call.body.get("experimentKey")
        if not experiment_key:
            raise _refused(InvalidArgument("experimentKey cannot be empty"))
        variation_key = call.body.get("variationKey") or ""
        override: Json = {
            "userId": user_id,
            "experimentKey": experiment_key,
            "variationKey": variation_key,
            "prevVariationKey": "",
        }
        experiment = self._live.config.experiments_by_key.get(experiment_key)
        if experiment is None:
            return {**override, "messages": ["experimentKey not found in configuration"]}
        if variation_key and variation_key not in experiment.variations_by_key:
            return {**override, "messages": ["variationKey not found in configuration"]}
        fields = {"experimentKey": experiment_key, "userId": user_id}
        previous = await self._call(
            "GetForcedVariation", _message(pb.GetForcedVariationRequest, fields)
        )
        fields["variationKey"] = variation_key
        await self._call("SetForcedVariation", _message(pb.SetForcedVariationRequest, fields))
        prev = previous.variation_key
        if variation_key:
            messages = ["updating previous override"] if prev else None
        else:
            messages = ["removing previous override" if prev else "no pre-existing override"]
        return {**override, "prevVariationKey": prev, "messages": messages}

    def _views_of_config(self) -> tuple[Json, Json]:
        """The served datafile as JSON and its OptimizelyConfig, made once per datafile."""
        config = self._live.config
        if self._views is None or self._views[0] is not config:
            datafile = json.loads(config.raw_json)
            self._views = (config, datafile, optimizely_config(datafile))
        return self._views[1], self._views[2]

    async def _datafile(self, call: Call) -> Json:
        """The datafile being served, as it was read."""
        return self._views_of_config()[0]

    async def _config(self, call: Call) -> Json:
        """The OptimizelyConfig of the datafile being served (trackd.optimizely_config)."""
        return self._views_of_config()[1]

    # -- /v1/notifications/event-stream ---------------------------------------------------

    async def _event_stream(self, call: Call) -> EventStream:
        """Admitted: holds a stream slot, which `EventStream.run` gives back."""
        if (full := self._interceptor.take_stream()) is not None:
            raise _refused(full)
        types = chosen_types(call.query)
        return EventStream(self._notifier, self._interceptor, types, raw="raw" in call.query)

    # -- what needs a service trackd does not run ------------------------------------------

    async def _no_user_profile_service(self, call: Call) -> Json:
        """As Agent with no user profile service configured. trackd's stickiness is its
        activation cache, whose entries are not Agent's profiles."""
        raise AgentError(500, "no user profile service found")

    async def _send_odp_event(self, call: Call) -> Json:
        """As Agent with ODP off: the request is checked, then refused (trackd talks to no
        ODP); the message is optimizely-sdk's."""
        if not call.body.get("action"):
            raise _refused(InvalidArgument('missing "action" in request payload'))
        if not call.body.get("identifiers"):
            raise _refused(InvalidArgument('missing or empty "identifiers" in request payload'))
        raise AgentError(500, "ODP is not enabled.")

    # -- /v1/decide ----------------------------------------------------------------------

    async def _decide(self, call: Call) -> Printed:
        forced = _forced_decisions(call.body.get("forcedDecisions"))  # decoded with the body
        user_id, attributes = call.user()
        if call.body.get("fetchSegments"):
            # As Agent answers with ODP off: trackd never fetches segments.
            raise AgentError(500, "failed to fetch qualified segments")
        options = []
        for name in call.body.get("decideOptions") or []:
            if name not in DECIDE_OPTIONS:
                raise _refused(InvalidArgument(f"invalid option: {name}"))
            options.append(f"DECIDE_OPTION_{name}")
        keys = call.query.get("keys", [])
        fields = {"userId": user_id, "attributes": attributes, "flagKeys": keys, "options": options}
        reply = await self._reply(
            "Decide", _message(pb.DecideRequest, fields), forced_decisions=forced
        )
        user_context = {"userId": user_id, "attributes": attributes}
        return Printed(
            self._decide_json.text(reply, self._live.config, user_context, one=len(keys) == 1)
        )


def _not_found(decision: Json, key_name: str) -> Json:
    """/v1/activate's answer for an unknown experiment or feature key: a 200, as Agent's."""
    return {
        **decision,
        "variationKey": "",
        "type": "",
        "enabled": False,
        "error": f"{key_name} not found",
    }
