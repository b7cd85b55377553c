"""Agent's `GET /v1/notifications/event-stream`: server-sent events of the decisions and
conversions this daemon makes (trackd.notifications), from gRPC, Connect and the Agent API
alike, as Agent's NotificationEventStreamHandler streams its SDK's notifications.

As Agent: each notification is `data: JSON` and a blank line (with `raw` in the query, the
JSON alone on a line), with no `event:` or `id:` field and no keep-alive comment; `filter`
(repeated, or comma-separated) keeps the types it names among `decision`, `track` and
`project_config_update`, an unknown one is ignored, and with none given every type is sent.
Unlike Agent, where the stream is off unless `api.enableNotifications` is set, it is served,
and needs the token scope of SetForcedVariation (`admin`); it holds one of the
--max-concurrent-streams slots, as WatchConfig, and ends when the daemon shuts down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import structlog

from trackd.asgi import Receive, Send
from trackd.notifications import TYPES, Notification, Notifier, Subscription
from trackd.rpc.interceptors import RpcInterceptor

log = structlog.get_logger("trackd.agent")

EVENT_STREAM_PATH = "/v1/notifications/event-stream"
FILTERABLE = frozenset(TYPES)  # Agent's notification types
HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"connection", b"keep-alive"),
]


def chosen_types(query: Mapping[str, Sequence[str]]) -> frozenset[str]:
    """The types the `filter` query parameters name, as Agent's getFilter reads them."""
    filters = query.get("filter", [])
    if not filters:
        return FILTERABLE  # Agent's getFilter: none given, every type
    return frozenset(name for given in filters for name in given.split(",") if name in FILTERABLE)


class EventStream:
    """One subscriber's answer, once admitted and holding its stream slot: `run` sends it."""

    def __init__(
        self,
        notifier: Notifier,
        interceptor: RpcInterceptor,
        types: frozenset[str],
        *,
        raw: bool,
    ) -> None:
        self._interceptor = interceptor
        self._subscription: Subscription = notifier.subscribe(types)
        self._raw = raw

    def _frame(self, notification: Notification) -> str:
        return f"{notification.data}\n" if self._raw else f"data: {notification.data}\n\n"

    async def run(self, receive: Receive, send: Send) -> None:
        """Sends notifications until the caller goes away or the daemon shuts down; the
        subscription and the stream slot are given back whatever happens."""
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            notifications = self._interceptor.until_closed(self._until_gone(receive))
            async for waiting in notifications:
                body = "".join(map(self._frame, waiting)).encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            self._subscription.close()
            self._interceptor.release_stream()
            if self._subscription.dropped:
                log.warning("notifications_dropped", count=self._subscription.dropped)

    async def _until_gone(self, receive: Receive) -> AsyncIterator[list[Notification]]:
        """The notifications, as they come, until the caller disconnects."""
        gone = asyncio.ensure_future(_disconnected(receive))
        following: asyncio.Future[list[Notification]] | None = None
        try:
            while True:
                following = asyncio.ensure_future(self._subscription.next())
                await asyncio.wait((following, gone), return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    return
                yield following.result()
        finally:
            gone.cancel()
            if following is not None:
                following.cancel()


async def _disconnected(receive: Receive) -> None:
    """Returns when the caller goes away: once a request's body is read, a server's receive()
    has nothing else to give. Anything else is a caller that cannot stream (an operation of
    /v1/batch, whose receive() answers its body again at once, where waiting for a disconnect
    would spin the event loop): its stream ends at once, with no events."""
    await receive()
