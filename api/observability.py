"""Request ids, the access log and the request histogram: one pure ASGI middleware.

Pure ASGI, not Starlette's ``BaseHTTPMiddleware``: that one runs the app in a task of its own
and pipes the body through a memory stream, which breaks the back-pressure of event streams and
costs every request a few hundred microseconds.

The middleware wraps the whole app, outside Starlette's ``ServerErrorMiddleware`` (see
``api/main.py``), so the 500 answered for an unhandled error carries the request id too, and
so does that error's log line.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citewise import metrics
from citewise.logs import request_id

HEADER = b"x-request-id"
UNMATCHED = "unmatched"  # the route label of requests no route matched (404s, CORS preflights)

_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# Any other method becomes OTHER: a label value per made-up method would be unbounded.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger("citewise.access")


def accepted_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-Id`` when it is sane (1-128 of ``[A-Za-z0-9._:-]``: nothing that
    could forge a log line or smuggle markup), else a fresh uuid4 in hex."""
    for name, value in headers:
        if name == HEADER:
            if _SANE_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


class RequestObserver:
    """Gives each HTTP request an id (logs, ``X-Request-Id`` response header), then writes its
    access line and observes its duration, once the last byte of the response is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        identifier = accepted_id(scope["headers"])
        # Not reset afterwards: servers run each request in a task of its own, whose context is
        # a copy, so the id cannot reach another request; and uvicorn's own line about an
        # exception escaping the app, written after we return, still carries it.
        request_id.set(identifier)
        header = (HEADER, identifier.encode("ascii"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list: the response object may own the one in the message.
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # Nothing sent means the server answers 500 itself (or the client left first).
            _record(scope, status or 500, time.perf_counter() - started)


def _record(scope: Scope, status: int, seconds: float) -> None:
    route = getattr(scope.get("route"), "path", None) or UNMATCHED
    method = scope["method"] if scope["method"] in _METHODS else "OTHER"
    metrics.HTTP_REQUEST_SECONDS.labels(method, route, metrics.status_class(status)).observe(
        seconds
    )
    client = scope.get("client")
    duration_ms = round(seconds * 1000, 1)
    # An allow-list of fields: never headers (keys, tokens), the query string or the body.
    access_log.info(
        "%s %s %d %.1fms",
        method,
        route,
        status,
        duration_ms,
        extra={
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
            "client_ip": client[0] if client else None,
        },
    )
