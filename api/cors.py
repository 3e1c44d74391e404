"""CORS for help widgets: exactly the origins registered widgets may run on.

Starlette's ``CORSMiddleware`` does the protocol (preflights, ``Vary``, exposed headers); this
only makes its origin check follow the widget registry, which the admin API can change while
the service runs (a fixed list would need a restart).

The token exchange is the exception: any page may call it and read the answer, because the
answer to a page that is not allowed is only a 403 saying so, which the widget then shows
("not enabled for this site") instead of a bare network error. The endpoint itself checks
the page's origin against the widget's list.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from citewise.serving.widgets import Widgets

TOKEN_PATH = "/v1/widget/token"


class WidgetCORSMiddleware(CORSMiddleware):
    def __init__(self, app: ASGIApp) -> None:
        super().__init__(
            app,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-Widget-Token"],
            expose_headers=["X-Citewise-Cache", "Retry-After", "X-Request-Id"],
            max_age=600,
        )
        self._token_exchange = CORSMiddleware(
            app, allow_origins=["*"], allow_methods=["POST"], allow_headers=["Content-Type"]
        )
        self._widgets: Widgets | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == TOKEN_PATH:
            await self._token_exchange(scope, receive, send)
            return
        if scope["type"] == "http" and self._widgets is None:
            services = getattr(scope["app"].state, "services", None)  # set by the lifespan
            self._widgets = services.widgets if services is not None else None
        if self._widgets is not None and any(k == b"origin" for k, _ in scope.get("headers", ())):
            await self._widgets.refresh_if_stale()
        await super().__call__(scope, receive, send)

    def is_allowed_origin(self, origin: str) -> bool:
        return self._widgets is not None and origin.lower() in self._widgets.known_origins()
