"""What a request must pass before the app reads its body, in this order:

1. **Declared size.** A ``Content-Length`` over the route's limit is a 413 at once:
   ``CITEWISE_MAX_BODY_MB`` for JSON, ten times ``CITEWISE_MAX_UPLOAD_MB`` for an upload.
2. **The client's rate limit** of the route's family (its guard's, ``api.security``), counted
   here so that requests whose bodies are malformed count too; the guard does not count the
   request again.
3. **Counted size.** The body is counted as the app reads it: once past the limit (a chunked
   body declares no length), the app's next read fails and the client gets the 413.

The declared size needs no Redis, so it is refused before the limit is counted. A refusal
sent before the body was read closes the connection: the server would otherwise read the rest
of the body, however large, to keep the connection open.

Every route is an ``AdmittedRoute`` (``api.bodies.TextRoute`` is one), which runs these checks
at the ASGI level when the router hands it a request, before its handler reads anything. Per
route rather than in a middleware in front of the router, because each answer depends on the
route: its limit (JSON or uploads) and its rate-limit family are read from its own
declaration (its guard, its OpenAPI body), so neither is written down twice. A middleware
would have to route each request itself first, which FastAPI's router does not offer outside
its internals; requests no route takes (404, 405) are never read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import response_to
from api.security import ClientLimit, Guard, count_client
from api.uploads import request_limit, request_too_large
from citewise.errors import CitewiseError, TooLarge
from citewise.serving.rate_limits import Family
from citewise.settings import LimitSettings
from citewise.wiring import Services

MULTIPART = "multipart/form-data"


@dataclass(frozen=True)
class RouteFacts:
    """What the admission needs to know of the route a request is for."""

    family: Family | None = None  # whose client limit it counts: its guard's
    uploads: bool = False  # it takes multipart uploads (its OpenAPI request body says so)


def facts_of(route: APIRoute) -> RouteFacts:
    family = None
    for call in _calls(route.dependant):
        if isinstance(call, Guard | ClientLimit):
            family = call.family
    body = (route.openapi_extra or {}).get("requestBody") or {}
    uploads = MULTIPART in (body.get("content") or {})
    return RouteFacts(family, uploads)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


class AdmittedRoute(APIRoute):
    """An API route that admits a request (the checks above) before its handler runs."""

    @cached_property
    def facts(self) -> RouteFacts:
        return facts_of(self)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services | None = getattr(scope["app"].state, "services", None)
        if services is None or (self.methods and scope["method"] not in self.methods):
            await super().handle(scope, receive, send)  # not started, or a 405
            return
        headers = Headers(scope=scope)
        limits = services.settings.limits
        upload = self.facts.uploads and _media_type(headers) == MULTIPART
        limit = request_limit(limits) if upload else int(limits.max_body_mb * 2**20)
        too_large = request_too_large(limits) if upload else body_too_large(limits)
        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise too_large
            if self.facts.family is not None:
                await count_client(scope, services, self.facts.family)
        except CitewiseError as error:
            await response_to(error, close=True)(scope, receive, send)
            return
        await _Counted(super().handle, limit, too_large)(scope, receive, send)


def body_too_large(limits: LimitSettings) -> TooLarge:
    return TooLarge(
        f"the request body is larger than {limits.max_body_mb:g} MB, the most this service "
        "reads (CITEWISE_MAX_BODY_MB)"
    )


def _media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


class _Counted:
    """Runs the app with its body counted: once past ``limit``, each read raises ``error``,
    and whatever the app answers to that is replaced by the error's 413."""

    def __init__(self, app: ASGIApp, limit: int, error: CitewiseError) -> None:
        self.app = app
        self.limit = limit
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        over = started = replaced = False

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                raise self.error
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise self.error
            return message

        async def replacing_send(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start" and over and not started:
                replaced = True
                await response_to(self.error, close=True)(scope, receive, send)
            if replaced:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, replacing_send)
        except Exception:
            if not over or started or replaced:
                raise
        if over and not started and not replaced:  # the app let the error out, or said nothing
            await response_to(self.error, close=True)(scope, receive, send)
