"""The host names the service answers to: each request's ``Host`` header, checked first.

This is the defence against DNS rebinding. A page on ``evil.example`` has its name resolve to
the attacker's server, then to ``127.0.0.1``: the browser now treats the local service as the
page's own origin (no CORS stands in the way of reading the answers) and keeps sending
``Host: evil.example``, which the page cannot change. So a service without API keys answers
only to localhost names unless ``CITEWISE_ALLOWED_HOSTS`` says otherwise; with keys, the
default is any name (a rebinding page has no key).

Starlette's ``TrustedHostMiddleware`` checks the same thing; this one answers with Citewise's
JSON error that names the setting to change, where Starlette's is a plain-text "Invalid host
header".
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import response_to
from citewise.errors import HostNotAllowed

ANY = "*"


def host_name(value: str) -> str:
    """The name in a Host header value: lower case, without the port or a final dot
    (``[::1]`` keeps its brackets)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value.partition("]")[0] + "]"
    return value.partition(":")[0].rstrip(".")


class AllowedHosts:
    """Pure ASGI: refuses an HTTP request whose Host is not allowed, with a JSON 403."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        patterns = tuple(hosts)
        self.any = ANY in patterns
        self.names = frozenset(p for p in patterns if not p.startswith("*."))
        self.suffixes = tuple(p[1:] for p in patterns if p.startswith("*."))  # ".example.com"

    def allows(self, name: str) -> bool:
        return self.any or name in self.names or name.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any:
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if self.allows(host_name(host)):
            await self.app(scope, receive, send)
            return
        error = HostNotAllowed(
            "this service does not answer to the host name in the Host header: add it to "
            "CITEWISE_ALLOWED_HOSTS (without API keys, only localhost names are allowed)"
        )
        await response_to(error, close=True)(scope, receive, send)
