"""API keys, widget tokens and rate limits as dependencies: one per route family.

Order matters: the client IP's limit is counted before the key is checked (so guessing keys is
rate limited too), then the key, then the key's own limit. A request carrying a widget token
(``X-Widget-Token``) is a widget's visitor: the token stands in for a query key, and the
widget's own limit applies (all its visitors together).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.deps import ServicesDep
from api.proxies import parse_ip
from citewise.serving.access import Caller
from citewise.serving.rate_limits import Family

CACHE_HEADER = "X-Citewise-Cache"
UNKNOWN_CLIENT = "unknown"

# Declared for the OpenAPI docs ("Authorize" in /docs); neither refuses a request by itself.
_bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")
_widget_token = APIKeyHeader(
    name="X-Widget-Token",
    auto_error=False,
    description="A help widget's page token, from POST /v1/widget/token.",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
ApiKeyDep = Annotated[str | None, Security(_api_key)]
WidgetTokenDep = Annotated[str | None, Security(_widget_token)]


def client_ip(request: Request) -> str:
    """The client's IP address, the key of per-IP limits: the peer, or what a proxy in
    CITEWISE_TRUSTED_PROXIES said (``api.proxies``). Anything that is not an IP address (no
    peer, a unix socket, a test client) is ``unknown``, one shared key, never a made-up one."""
    address = parse_ip(request.client.host) if request.client else None
    return str(address) if address is not None else UNKNOWN_CLIENT


def _guard(
    family: Family, need: Literal["query", "admin"], *, widget: bool = False
) -> Callable[..., Awaitable[Caller]]:
    """``widget``: a widget's page token is taken here (else it is ignored, as on admin
    routes, and a key is needed as if there were none)."""

    async def guard(
        request: Request,
        services: ServicesDep,
        bearer: BearerDep,
        api_key: ApiKeyDep,
        widget_token: WidgetTokenDep,
    ) -> Caller:
        await services.limiter.check(family, "ip", client_ip(request))
        if widget_token is not None and widget:
            grant = await services.widgets.verify(widget_token, request.headers.get("origin"))
            await services.limiter.check(family, "widget", grant.widget_id)
            return Caller("widget", grant.owner, grant.kb)
        presented = bearer.credentials if bearer is not None else api_key
        caller = services.keys.authorize(presented, need)
        if caller.keyed:
            await services.limiter.check(family, "key", caller.owner)
        return caller

    return guard


# A widget's token is taken where its script goes, as docs/security.md lists them: search,
# ask (whole or streamed), feedback, and the model list (its own knowledge base only).
SearchCaller = Annotated[Caller, Depends(_guard("search", "query", widget=True))]
AskCaller = Annotated[Caller, Depends(_guard("ask", "query", widget=True))]
# The OpenAI-compatible chat: keys (or the public, when queries are), never a widget token.
ChatCaller = Annotated[Caller, Depends(_guard("ask", "query"))]
AdminCaller = Annotated[Caller, Depends(_guard("admin", "admin"))]
# Feedback: from a widget's visitors (token) or anyone who may ask.
FeedbackCaller = Annotated[Caller, Depends(_guard("widget", "query", widget=True))]


async def _token_exchange(request: Request, services: ServicesDep) -> None:
    # Public by design (a widget holds no key): only the client's rate limit applies here;
    # the widget's own limit is counted once the widget id is known.
    await services.limiter.check("widget", "ip", client_ip(request))


TokenExchange = Annotated[None, Depends(_token_exchange)]
