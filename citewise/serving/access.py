"""API keys: admin keys and query keys from settings, checked in constant time, never logged.

Configuration may hold a key as ``sha256:<hex>`` (its SHA-256) instead of the key itself. Every
configured key is kept only as a SHA-256 digest, and a presented key is hashed and compared
with each of them using ``hmac.compare_digest``, so neither the comparison time nor an error
message says anything about the keys. A caller is known afterwards by a fingerprint (the first
16 hex digits of the digest): rate limits and conversations use it, logs never see a key.

Who may do what:

- no keys configured at all: everything is open (the service says so at start);
- query endpoints (search, ask, chat, models) need a query or an admin key when query keys are
  configured, and are public otherwise;
- admin endpoints need an admin key whenever any key is configured (with only query keys, they
  are closed to everyone).

Where no key is needed, an unknown one is ignored rather than refused: OpenAI SDKs insist on
sending some key (``api_key="unused"``) to servers that take none.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from citewise.errors import Forbidden, Unauthorized

Role = Literal["admin", "query", "widget", "public"]
PUBLIC_OWNER = "public"


@dataclass(frozen=True)
class Caller:
    """Who is asking: a role, and an owner name for per-key state (never the key).

    A help widget's visitor is a caller of its own (``widget-<id>.<visitor id>``), bound to the
    widget's knowledge base.
    """

    role: Role
    owner: str = PUBLIC_OWNER
    kb: str | None = None  # the only knowledge base this caller may use, if bound to one

    @property
    def keyed(self) -> bool:
        return self.role in ("admin", "query")

    def knowledge_base(self, requested: str | None, default: str) -> str:
        """The knowledge base a request may use: its own choice, unless the caller is bound."""
        if self.kb is None:
            return requested or default
        if requested is not None and requested != self.kb:
            raise Forbidden(f"this widget answers from knowledge base {self.kb!r} only")
        return self.kb


def _digest(configured: str) -> bytes:
    if configured.startswith("sha256:"):
        return bytes.fromhex(configured.removeprefix("sha256:"))
    return hashlib.sha256(configured.encode("utf-8")).digest()


class KeyRing:
    """The configured keys, as digests."""

    def __init__(self, admin: Sequence[SecretStr], query: Sequence[SecretStr]) -> None:
        self._admin = [_digest(k.get_secret_value()) for k in admin]
        self._query = [_digest(k.get_secret_value()) for k in query]

    @property
    def open(self) -> bool:
        return not self._admin and not self._query

    @property
    def queries_public(self) -> bool:
        return not self._query

    def identify(self, presented: str) -> Caller | None:
        """The caller this key belongs to, or ``None`` for an unknown key."""
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        role: Role | None = None
        # Compare with every key, without stopping early.
        for candidate in self._query:
            if hmac.compare_digest(digest, candidate):
                role = "query"
        for candidate in self._admin:
            if hmac.compare_digest(digest, candidate):
                role = "admin"
        if role is None:
            return None
        return Caller(role, f"key-{digest.hex()[:16]}")

    def authorize(self, presented: str | None, need: Literal["query", "admin"]) -> Caller:
        """The caller, or ``Unauthorized`` / ``Forbidden``."""
        if self.open:
            return Caller("public")
        caller = self.identify(presented) if presented else None
        if caller is None:
            if need == "query" and self.queries_public:
                return Caller("public")
            if presented:
                raise Unauthorized("the API key is not valid")
            raise Unauthorized("an API key is needed: send 'Authorization: Bearer <key>'")
        if need == "admin" and caller.role != "admin":
            raise Forbidden("this endpoint needs an admin key")
        return caller
