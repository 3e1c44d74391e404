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

Role = Literal["admin", "query", "widget", "user", "public"]
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
    # An end user's token: the knowledge bases its claim grants (None: every one).
    kbs: frozenset[str] | None = None

    @property
    def keyed(self) -> bool:
        """Whether the caller has limits of its own (a key's, or an end user's)."""
        return self.role in ("admin", "query", "user")

    def may_use(self, kb: str) -> bool:
        """Whether this caller may search and ask knowledge base ``kb``."""
        if self.kb is not None:
            return kb == self.kb
        return self.kbs is None or kb in self.kbs

    def knowledge_base(self, requested: str | None, default: str) -> str:
        """The knowledge base a request may use: its own choice, unless the caller is bound
        (a widget's) or limited (an end user's token)."""
        if self.kb is not None:
            if requested is not None and requested != self.kb:
                raise Forbidden(f"this widget answers from knowledge base {self.kb!r} only")
            return self.kb
        chosen = requested or default
        if self.kbs is not None and chosen not in self.kbs:
            if requested is None and len(self.kbs) == 1:
                return next(iter(self.kbs))  # the one a user may ask, when none is named
            raise Forbidden(f"your token does not grant knowledge base {chosen!r}")
        return chosen


def _digest(configured: str) -> bytes:
    if configured.startswith("sha256:"):
        return bytes.fromhex(configured.removeprefix("sha256:"))
    return hashlib.sha256(configured.encode("utf-8")).digest()


class KeyRing:
    """The configured keys, as digests."""

    def __init__(
        self, admin: Sequence[SecretStr], query: Sequence[SecretStr], *, users: bool = False
    ) -> None:
        self._admin = [_digest(k.get_secret_value()) for k in admin]
        self._query = [_digest(k.get_secret_value()) for k in query]
        self._users = users  # end users' tokens are accepted: queries need one (or a key)

    @property
    def open(self) -> bool:
        return not self._admin and not self._query and not self._users

    @property
    def queries_public(self) -> bool:
        return not self._query and not self._users

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
            raise Unauthorized(
                "an API key or a user's token is needed: send 'Authorization: Bearer <key>'"
                if self._users
                else "an API key is needed: send 'Authorization: Bearer <key>'"
            )
        if need == "admin" and caller.role != "admin":
            raise Forbidden("this endpoint needs an admin key")
        return caller
