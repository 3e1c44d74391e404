"""The MCP server (``api.mcp_server``) over streamable HTTP at ``/mcp``, as the app's own
endpoint: admitted as every route is (``api.admission``: other sites' pages, media type, body
size, the client's limit), then the query key checked as a search route checks it, with our
JSON 401 or 403, and only then handed to the SDK's session manager.

The SDK's session manager runs a task group for the app's lifetime; ``running`` builds the
server over the app's services and runs it inside the app's lifespan, a new one each time
the app starts (the SDK's runs once only).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.datastructures import Headers
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from api.admission import RouteFacts, admit
from api.errors import response_to
from api.mcp_server import CALLER, CitewiseMCP
from api.security import check_key, credentials
from citewise.errors import CitewiseError, Unavailable
from citewise.wiring import Services

PATH = "/mcp"
# POST only: with no sessions there is nothing a GET stream could carry, and none to DELETE
# (the protocol allows a 405 for both).
METHODS = ["POST"]
# Each request counts as a search (the client's limit and the key's), as GET /v1/models does;
# a call of the ask tool also counts as an ask (api.mcp_server).
_FACTS = RouteFacts(family="search")
_STATE = "mcp_sessions"


def mount(app: FastAPI) -> None:
    """Add the endpoint at ``/mcp`` (not in the OpenAPI schema: it speaks JSON-RPC)."""
    app.router.routes.append(
        _NamedRoute(PATH, McpEndpoint(), methods=METHODS, include_in_schema=False)
    )


class _NamedRoute(Route):
    """A route that puts itself in the request's scope, as FastAPI's routes do: the access
    log and the request histogram name requests by it (``api.observability``)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match != Match.NONE:
            child_scope["route"] = self
        return match, child_scope


@asynccontextmanager
async def running(app: FastAPI, services: Services) -> AsyncIterator[None]:
    """Serve MCP requests while the app runs (enter it in the lifespan, after the services)."""
    server = CitewiseMCP(services)
    server.streamable_http_app()  # builds the session manager; the app it returns is unused
    manager = server.session_manager
    async with manager.run():
        setattr(app.state, _STATE, manager)
        try:
            yield
        finally:
            delattr(app.state, _STATE)


class McpEndpoint:
    """Pure ASGI: the checks, then the SDK."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        services: Services | None = getattr(state, "services", None)
        manager: StreamableHTTPSessionManager | None = getattr(state, _STATE, None)
        if services is None or manager is None:
            error = Unavailable("the service is starting or stopping; try again shortly")
            await response_to(error)(scope, receive, send)
            return

        async def keyed(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                bearer, api_key = credentials(Headers(scope=scope))
                caller = await check_key(scope, services, "search", "query", bearer, api_key)
                scope[CALLER] = caller
            except CitewiseError as error:  # before the body is read: close, as admit does
                await response_to(error, close=True)(scope, receive, send)
                return
            await manager.handle_request(scope, receive, send)

        await admit(_FACTS, services, keyed)(scope, receive, send)
