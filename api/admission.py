"""What a request must pass before the app reads its body, in this order:

1. **Cross-site requests.** A request that may change something (any method but GET, HEAD and
   OPTIONS) sent by a browser page of another site is a 403 ``origin_not_allowed``. The browser
   says where a request comes from: ``Sec-Fetch-Site`` (``same-origin`` and ``none`` pass), or,
   from browsers that do not send it, ``Origin``, which must name the request's own host. Two
   exceptions: the widget token exchange, which any page may call (it checks the page's origin
   itself), and the routes a help widget calls (those taking a widget token), from a page on
   an origin some widget is registered for. Requests without either header (curl, SDKs,
   servers) are no browser's, and pass.
2. **Media type.** A POST, PUT or PATCH, or any request with a body, must say its body is JSON
   (or multipart, where a route takes uploads): a 415 otherwise. Browsers send ``text/plain``,
   form and multipart bodies to other sites without asking first; JSON they send only after a
   CORS preflight, which only registered widget origins pass.
3. **Declared size.** A ``Content-Length`` over the route's limit is a 413 at once:
   ``CITEWISE_MAX_BODY_MB`` for JSON, ten times ``CITEWISE_MAX_UPLOAD_MB`` for an upload.
4. **The client's rate limit** of the route's family (its guard's, ``api.security``), counted
   here so that requests whose bodies are malformed count too; the guard does not count the
   request again.
5. **Counted size.** The body is counted as the app reads it: once past the limit (a chunked
   body declares no length), the app's next read fails and the client gets the 413.

None of 1-3 needs Redis, so they are refused before the limit is counted. A refusal sent
before the body was read closes the connection: the server would otherwise read the rest of
the body, however large, to keep the connection open.

Every route is an ``AdmittedRoute`` (``api.bodies.TextRoute`` is one), which runs these checks
at the ASGI level when the router hands it a request, before its handler reads anything. Per
route rather than in a middleware in front of the router, because each answer depends on the
route: its limit (JSON or uploads), its rate-limit family and whether widgets call it are read
from its own declaration (its guard, its OpenAPI body), so none is written down twice. A
middleware would have to route each request itself first, which FastAPI's router does not
offer outside its internals; requests no route takes (404, 405) are never read. The one
endpoint that is not a FastAPI route, the MCP server at ``/mcp`` (``api.mcp_http``), states
its facts itself and goes through the same ``admit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.cors import TOKEN_PATH
from api.errors import response_to
from api.security import ClientLimit, Guard, count_client
from api.uploads import request_limit, request_too_large
from citewise.errors import CitewiseError, OriginNotAllowed, TooLarge, UnsupportedMediaType
from citewise.serving.rate_limits import Family
from citewise.settings import LimitSettings
from citewise.wiring import Services

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site values of no other site
MULTIPART = "multipart/form-data"


@dataclass(frozen=True)
class RouteFacts:
    """What the admission needs to know of the route a request is for."""

    family: Family | None = None  # whose client limit it counts: its guard's
    widget: bool = False  # a help widget's page may call it from the widget's own site
    public: bool = False  # any page may call it: the token exchange (``api.cors``)
    uploads: bool = False  # it takes multipart uploads (its OpenAPI request body says so)


def facts_of(route: APIRoute) -> RouteFacts:
    family, widget = None, False
    for call in _calls(route.dependant):
        if isinstance(call, Guard):
            family, widget = call.family, call.widget
        elif isinstance(call, ClientLimit):
            family = call.family
    body = (route.openapi_extra or {}).get("requestBody") or {}
    uploads = MULTIPART in (body.get("content") or {})
    return RouteFacts(family, widget, route.path == TOKEN_PATH, uploads)


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
        await admit(self.facts, services, super().handle)(scope, receive, send)


def admit(route: RouteFacts, services: Services, app: ASGIApp) -> ASGIApp:
    """``app`` behind the checks above, for a route described by ``route``: every
    ``AdmittedRoute``'s handler, and the ASGI apps mounted beside the routes (the MCP
    server at ``/mcp``)."""

    async def admitted(scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        limits = services.settings.limits
        upload = route.uploads and _media_type(headers) == MULTIPART
        limit = request_limit(limits) if upload else int(limits.max_body_mb * 2**20)
        too_large = request_too_large(limits) if upload else body_too_large(limits)
        try:
            _check_site(scope, headers, route, services)
            _check_media_type(scope["method"], headers, route)
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise too_large
            if route.family is not None:
                await count_client(scope, services, route.family)
        except CitewiseError as error:
            await response_to(error, close=True)(scope, receive, send)
            return
        await _Counted(app, limit, too_large)(scope, receive, send)

    return admitted


def body_too_large(limits: LimitSettings) -> TooLarge:
    return TooLarge(
        f"the request body is larger than {limits.max_body_mb:g} MB, the most this service "
        "reads (CITEWISE_MAX_BODY_MB)"
    )


def _check_site(scope: Scope, headers: Headers, route: RouteFacts, services: Services) -> None:
    if scope["method"] in SAFE_METHODS or _same_origin(headers) or route.public:
        return
    origin = headers.get("origin")
    if route.widget and origin is not None and origin.lower() in services.widgets.known_origins():
        return
    page = f" ({origin[:100]})" if origin is not None else ""
    raise OriginNotAllowed(
        f"a page of another site{page} may not send this request: only the pages of "
        "registered help widgets may, and only to the endpoints a widget uses"
    )


def _same_origin(headers: Headers) -> bool:
    """Whether the browser says the request comes from this service's own pages, or no
    browser sent it."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in _SAME_SITE
    origin = headers.get("origin")  # a browser without Sec-Fetch-Site, or no browser
    return origin is None or urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def _check_media_type(method: str, headers: Headers, route: RouteFacts) -> None:
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    if method in SAFE_METHODS or (method not in _BODY_METHODS and not has_body):
        return
    kind = _media_type(headers)
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        return
    if kind == MULTIPART and route.uploads:
        return
    sent = f"the request said {kind[:60]}" if kind else "the request had no Content-Type"
    if route.uploads:
        takes = "a JSON body (Content-Type: application/json) or files (multipart/form-data)"
    else:
        takes = "a JSON body: send it with Content-Type: application/json"
    raise UnsupportedMediaType(f"this endpoint takes {takes} ({sent})")


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
