"""End users' JWTs from the deployment's identity provider: who is asking, and which
knowledge bases they may search and ask.

A token is checked with PyJWT against the pinned algorithms only (never ``none``; an HS token
is never checked with a public key, nor an RS/ES token with the secret), for this service's
audience and the configured issuer, with a bounded clock skew, and must carry ``exp``, ``sub``,
``iss`` and ``aud``. RS256/ES256 keys come from a JWKS file or URL, kept for
``CITEWISE_JWT_JWKS_REFRESH_S`` and read again at once when a token names a key id the set
does not hold: the identity provider rotated its keys.

The caller it makes is a ``user`` owned by its issuer and subject (conversations and rate
limits follow the person, not the token), allowed the knowledge bases its claim names.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt

from citewise.errors import Unauthorized
from citewise.serving.access import Caller
from citewise.settings import AccessSettings

log = logging.getLogger("citewise.access")
ALL = "*"
_FETCH_TIMEOUT_S = 5.0
_SEPARATORS = re.compile(r"[\s,]+")


def looks_like_jwt(presented: str) -> bool:
    """Three base64url parts separated by dots: a token, not an API key."""
    return presented.count(".") == 2 and all(
        part and re.fullmatch(r"[A-Za-z0-9_-]+", part) for part in presented.split(".")
    )


class UserTokens:
    """Checks end users' tokens; one per process, shared by all requests (thread-safe)."""

    def __init__(
        self, settings: AccessSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._algorithms = list(settings.token_algorithms)
        secret = settings.jwt_secret
        self._secret = secret.get_secret_value() if secret is not None else None
        jwks = settings.jwt_jwks
        self._keys = _KeySet(jwks, settings.jwt_jwks_refresh_s, clock) if jwks else None

    def verify(self, token: str) -> Caller:
        """The caller a valid token names, or ``Unauthorized`` saying what is wrong with it."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a valid JWT") from None
        algorithm = str(header.get("alg", ""))
        if algorithm not in self._algorithms:
            raise Unauthorized(
                f"tokens signed with {algorithm or 'no algorithm'!r} are not accepted "
                f"(accepted: {', '.join(self._algorithms)})"
            )
        key: Any = self._secret if algorithm.startswith("HS") else self._public_key(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.jwt_leeway_s,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token was not issued for this service (audience)") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token was not issued by the accepted issuer") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token's signature is not valid") from None
        return Caller("user", _owner(claims), kbs=self._knowledge_bases(claims))

    def _public_key(self, header: Mapping[str, Any]) -> Any:
        assert self._keys is not None  # an asymmetric algorithm is pinned only with a JWKS
        kid = header.get("kid")
        key = self._keys.find(str(kid) if kid is not None else None)
        if key is None:
            raise Unauthorized("the token is signed with a key the identity provider does not list")
        return key

    def _knowledge_bases(self, claims: Mapping[str, Any]) -> frozenset[str] | None:
        """The knowledge bases the claim allows (None: all of them)."""
        raw = claims.get(self._settings.jwt_kb_claim)
        values = _values(raw)
        mapping = self._settings.jwt_claim_kbs
        granted: set[str] = set()
        for value in values:
            granted.update(mapping.get(value, []) if mapping is not None else [value])
        return None if ALL in granted else frozenset(granted)


def _values(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [v for v in _SEPARATORS.split(raw) if v]
    if isinstance(raw, list):
        return [str(v) for v in raw if isinstance(v, str | int)]
    return []


def _owner(claims: Mapping[str, Any]) -> str:
    """The same person is the same owner whatever token they present next."""
    who = f"{claims['iss']}\x00{claims['sub']}".encode()
    return f"user-{hashlib.sha256(who).hexdigest()[:16]}"


class _KeySet:
    """The identity provider's public keys, by key id, from a JWKS file or URL."""

    def __init__(self, where: str, refresh_s: int, clock: Callable[[], float]) -> None:
        self._where = where
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str | None, Any] = {}
        self._read_at = float("-inf")

    def find(self, kid: str | None) -> Any:
        with self._lock:
            stale = self._clock() - self._read_at > self._refresh_s
            if stale or (kid not in self._keys and self._may_read_again()):
                self._read()
            if kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            return self._keys.get(kid)

    def _may_read_again(self) -> bool:
        # An unknown key id is read again at most once a second: a flood of tokens naming
        # made-up keys must not become a flood of requests to the identity provider.
        return self._clock() - self._read_at > 1.0

    def _read(self) -> None:
        self._read_at = self._clock()
        try:
            text = self._fetch()
            keys = jwt.PyJWKSet.from_json(text).keys
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            log.warning("the JWKS at CITEWISE_JWT_JWKS could not be read: %s", exc)
            if self._keys:  # keep the keys we have: the provider may be down for a moment
                return
            raise Unauthorized("the identity provider's keys could not be read") from None
        self._keys = {key.key_id: key.key for key in keys}

    def _fetch(self) -> str:
        if self._where.startswith(("https://", "http://")):
            request = urllib.request.Request(self._where, headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT_S) as response:
                return str(response.read(1_000_000).decode("utf-8"))
        return Path(self._where).read_text(encoding="utf-8")
