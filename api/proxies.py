"""The client's address behind a reverse proxy: ``X-Forwarded-For`` from trusted proxies only.

Only a peer listed in ``CITEWISE_TRUSTED_PROXIES`` (addresses or networks; default: none) may
say who the client is. Its ``X-Forwarded-For`` is read from the right, the end its own proxy
wrote: hops that are themselves trusted proxies are skipped, and the first that is not is the
client. Every hop must be a syntactically valid IP address: at anything else the walk stops at
the last valid hop, so no made-up string ever becomes the client address (and with it a
rate-limit key). ``X-Forwarded-Proto`` from a trusted peer sets the scheme.

This replaces uvicorn's own proxy handling, which trusts ``127.0.0.1`` unless told otherwise
and passes any string through: ``citewise serve`` turns it off, and ``uvicorn --factory``
needs ``--no-proxy-headers`` (the compose file passes it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> Address | None:
    """An IP address written as one (``[v6]:port`` and ``v4:port`` too), else ``None``."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ForwardedFor:
    """Pure ASGI: sets ``scope["client"]`` (and the scheme) from trusted proxies' headers."""

    def __init__(self, app: ASGIApp, trusted: Iterable[str]) -> None:
        self.app = app
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in trusted
        )

    def trusts(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.networks and scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = parse_ip(client[0]) if client else None
            if peer is not None and self.trusts(peer):
                self._rewrite(scope, peer)
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope, peer: Address) -> None:
        hops: list[str] = []
        proto = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                hops.extend(value.decode("latin-1").split(","))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").strip().lower()
        client = peer
        for hop in reversed(hops):
            address = parse_ip(hop)
            if address is None:
                break  # not an address: believe nothing further left
            client = address
            if not self.trusts(address):
                break
        if client != peer:
            scope["client"] = (str(client), 0)
        if proto in ("http", "https") and scope["type"] == "http":
            scope["scheme"] = proto
