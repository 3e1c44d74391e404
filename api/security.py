"""API keys, widget tokens and rate limits as dependencies: one per route family.

Order matters: the client IP's limit is counted before the key is checked (so guessing keys is
rate limited too), then the key, then the key's own limit. The client's limit is usually
counted earlier still, by the admission (``api.admission``) before the body is read, which
finds each route's family on its guard; the guard then does not count the request again.
A request carrying a widget token (``X-Widget-Token``) is a widget's visitor: the token stands
in for a query key, and the widget's own limit applies (all its visitors together).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.types import Scope

from api.deps import ServicesDep
from api.proxies import parse_ip
from citewise.errors import Forbidden
from citewise.serving.access import Caller
from citewise.serving.rate_limits import Family
from citewise.serving.user_tokens import looks_like_jwt
from citewise.threads import run_blocking
from citewise.wiring import Services

CACHE_HEADER = "X-Citewise-Cache"
UNKNOWN_CLIENT = "unknown"
_COUNTED = "citewise.client_counted"  # in the request's scope: its client's limit was counted

# Declared for the OpenAPI docs ("Authorize" in /docs); neither refuses a request by itself.
_bearer = HTTPBearer(
    auto_error=False, description="An API key, or an end user's JWT (CITEWISE_JWT_*)."
)
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
    return client_address(request.scope)


def client_address(scope: Scope) -> str:
    """``client_ip`` of a request's ASGI scope."""
    client = scope.get("client")
    address = parse_ip(client[0]) if client else None
    return str(address) if address is not None else UNKNOWN_CLIENT


async def count_client(scope: Scope, services: Services, family: Family) -> None:
    """Count the request against its client's limit in ``family``, once: the admission
    (``api.admission``) does it before the body is read, and the route's guard then does not
    count it again."""
    if scope.get(_COUNTED):
        return
    scope[_COUNTED] = True
    await services.limiter.check(family, "ip", client_address(scope))


class ClientLimit:
    """Dependency: the client's limit of a route family (counted once per request)."""

    def __init__(self, family: Family) -> None:
        self.family = family

    async def __call__(self, request: Request, services: ServicesDep) -> None:
        await count_client(request.scope, services, self.family)


class Guard:
    """Dependency: the client's limit, then the caller's key (or widget token) and its limit.

    ``widget``: a widget's page token is taken here (else it is ignored, as on admin routes,
    and a key is needed as if there were none); a widget's page may then call the route from
    another site (``api.admission``)."""

    def __init__(
        self, family: Family, need: Literal["query", "admin"], *, widget: bool = False
    ) -> None:
        self.family = family
        self.need: Literal["query", "admin"] = need
        self.widget = widget

    async def __call__(
        self,
        request: Request,
        services: ServicesDep,
        bearer: BearerDep,
        api_key: ApiKeyDep,
        widget_token: WidgetTokenDep,
    ) -> Caller:
        await count_client(request.scope, services, self.family)
        if widget_token is not None and self.widget:
            grant = await services.widgets.verify(widget_token, request.headers.get("origin"))
            await services.limiter.check(self.family, "widget", grant.widget_id)
            return Caller("widget", grant.owner, grant.kb)
        bearer_token = bearer.credentials if bearer is not None else None
        return await check_key(
            request.scope, services, self.family, self.need, bearer_token, api_key
        )


async def check_key(
    scope: Scope,
    services: Services,
    family: Family,
    need: Literal["query", "admin"],
    bearer: str | None,
    api_key: str | None,
) -> Caller:
    """The client's limit (counted once), then the credential: an end user's token (a JWT as
    the bearer token, when CITEWISE_JWT_* accept them), else an API key (the bearer token or
    ``X-API-Key``); then the caller's own limit."""
    await count_client(scope, services, family)
    tokens = services.user_tokens
    if tokens is not None and bearer is not None and looks_like_jwt(bearer):
        # An end user's token: a JWKS URL may be fetched, so off the event loop.
        caller = await run_blocking(tokens.verify, bearer)
        if need == "admin":
            raise Forbidden("this endpoint needs an admin key; a user's token is not one")
    else:
        caller = services.keys.authorize(bearer if bearer is not None else api_key, need)
    if caller.keyed:
        await services.limiter.check(family, "key", caller.owner)
    return caller


def credentials(headers: Headers) -> tuple[str | None, str | None]:
    """The bearer token and the ``X-API-Key`` a request carries, read as the guards read them
    (for ASGI apps beside the routes, which have no dependencies)."""
    scheme, token = get_authorization_scheme_param(headers.get("authorization"))
    bearer = token if scheme.lower() == "bearer" and token else None
    return bearer, headers.get("x-api-key")


# A widget's token is taken where its script goes, as docs/security.md lists them: search,
# ask (whole or streamed), feedback, and the model list (its own knowledge base only).
SearchCaller = Annotated[Caller, Depends(Guard("search", "query", widget=True))]
AskCaller = Annotated[Caller, Depends(Guard("ask", "query", widget=True))]
# The OpenAI-compatible chat: keys (or the public, when queries are), never a widget token.
ChatCaller = Annotated[Caller, Depends(Guard("ask", "query"))]
AdminCaller = Annotated[Caller, Depends(Guard("admin", "admin"))]
# Feedback: from a widget's visitors (token) or anyone who may ask.
FeedbackCaller = Annotated[Caller, Depends(Guard("widget", "query", widget=True))]
# The token exchange is public by design (a widget holds no key): only the client's limit
# applies there; the widget's own limit is counted once the widget id is known.
TokenExchange = Annotated[None, Depends(ClientLimit("widget"))]
