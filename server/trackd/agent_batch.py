"""Optimizely Agent's `POST /v1/batch`: many Agent API calls in one request, each answered
as if it came alone (its own headers, SDK key and token included; nothing is inherited from
the batch request), as Agent's batch middleware does. At most --http-batch-max-operations
operations (a 422 beyond, Agent's default 500), at most BATCH_CONCURRENCY at once.

Agent lists the answers in the order they finished; here they keep the operations' order,
one of the orders Agent could give.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from trackd.asgi import ASGIApp, Message, Receive, Scope, Send, read_body

BATCH_PATH = "/v1/batch"
BATCH_CONCURRENCY = 10  # Agent's server.batchRequests.maxConcurrency default


def _now() -> str:
    """A timestamp as Go writes a UTC time.Time in JSON (RFC 3339 with fractions, `Z`)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def _json_answer(send: Send, status: int, answer: Any) -> None:
    body = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AgentBatch:
    """`application` (the Agent API), with /v1/batch in front of it."""

    def __init__(self, application: ASGIApp, *, max_operations: int, max_body_bytes: int):
        self._application = application
        self._max_operations = max_operations
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != BATCH_PATH or scope["method"] != "POST":
            await self._application(scope, receive, send)
            return
        operations = await self._operations(receive)
        if operations is None:
            await _json_answer(send, 400, {"error": "cannot decode the operation body"})
            return
        if len(operations) > self._max_operations:
            error = f"too many operations, exceeding {self._max_operations} operations"
            await _json_answer(send, 422, {"error": error})
            return
        started = _now()
        slots = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def one(operation: dict[str, Any]) -> dict[str, Any]:
            async with slots:
                return await self._operation(scope, operation)

        answers = await asyncio.gather(*(one(operation) for operation in operations))
        await _json_answer(
            send,
            200,
            {
                "startedAt": started,
                "endedAt": _now(),
                "errorCount": sum(answer["status"] != 200 for answer in answers),
                "response": answers,
            },
        )

    async def _operations(self, receive: Receive) -> list[dict[str, Any]] | None:
        """The request's operations; None when they cannot be read (too large included)."""
        body = await read_body(receive, self._max_body_bytes)
        if body is None:
            return None
        try:
            request = json.loads(body)
            operations = request["operations"]
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
            return None
        return operations

    async def _operation(self, batch: Scope, operation: dict[str, Any]) -> dict[str, Any]:
        """One operation through the Agent API, as Agent's batch middleware makes it: the
        body as JSON (`null` when absent), `params` added to the URL's query, and only the
        operation's own headers."""
        method = str(operation.get("method", ""))
        url = str(operation.get("url", ""))
        headers = {str(k): str(v) for k, v in (operation.get("headers") or {}).items()}
        params = {str(k): str(v) for k, v in (operation.get("params") or {}).items()}
        split = urlsplit(url)
        query = "&".join(part for part in (split.query, urlencode(params)) if part)
        request_id = next(
            (v for k, v in headers.items() if k.lower() == "x-request-id"), str(uuid.uuid4())
        )
        scope: Scope = {
            **batch,
            "method": method.upper(),
            "path": split.path,
            "raw_path": split.path.encode(),
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        body = json.dumps(operation.get("body")).encode()
        answer: dict[str, Any] = {
            "status": 200,
            "requestID": request_id,
            "operationID": str(operation.get("operationID", "")),
            "method": method,
            "url": url,
            "body": None,
            "startedAt": _now(),
        }
        chunks: list[bytes] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        if split.path == BATCH_PATH:  # no batch inside a batch: Agent's router has no route
            answer["status"], chunks = 404, [b'{"error": "404 page not found"}']
        else:
            await self._application(scope, receive, send)
        try:
            answer["body"] = json.loads(b"".join(chunks)) if chunks else None
        except ValueError:
            answer["body"] = None
        answer["endedAt"] = _now()
        return answer
