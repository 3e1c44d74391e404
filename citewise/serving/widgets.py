"""Help widgets: who may embed one, and the short-lived page tokens they run on.

A site owner registers a public widget id with the page origins it may run on (configuration,
``CITEWISE_WIDGETS``, or the admin API, kept in Redis). A page exchanges the id for a token
(``mint``): a JWT signed with ``CITEWISE_WIDGET_SECRET`` (HS256), naming the widget, the page's
origin as its audience, the knowledge base, the visitor (a random id the widget keeps in the
browser, claim ``vis``: what the visitor keeps on the server is theirs alone), and an expiry
``CITEWISE_WIDGET_TOKEN_TTL_S`` away.
Every later request presents it, and ``verify`` refuses it when the signature is wrong, when it
has expired, when the request's ``Origin`` is not the one it was issued to, or when the widget
no longer lists that origin (so removing an origin revokes its tokens within
``REFRESH_S``). The widget itself holds no secret: the id is public, and the token is worth
nothing on another site, where browsers send that site's origin.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from citewise.errors import (
    CacheUnavailable,
    ConfigurationError,
    InvalidRequest,
    OriginNotAllowed,
    UnknownWidget,
    WidgetTokenExpired,
    WidgetTokenInvalid,
)
from citewise.knowledge_base import validate_kb
from citewise.redis_client import RedisHandle, RedisUnavailable
from citewise.settings import WidgetSettings, WidgetSpec

ISSUER = "citewise"
ALGORITHM = "HS256"
REFRESH_S = 5.0  # how stale this process's view of widgets registered through the API may be
MAX_ORIGINS = 50


@dataclass(frozen=True)
class Widget:
    widget_id: str
    origins: frozenset[str]
    kb: str
    managed: bool  # registered through the admin API (else: configuration, read-only)

    def to_dict(self) -> dict[str, Any]:
        return {
            "widget_id": self.widget_id,
            "origins": sorted(self.origins),
            "kb": self.kb,
            "source": "api" if self.managed else "configuration",
        }


@dataclass(frozen=True)
class Grant:
    """What a verified token allows: this widget, from this origin, on this knowledge base,
    for this visitor (the browser that asked for the token)."""

    widget_id: str
    origin: str
    kb: str
    visitor: str

    @property
    def owner(self) -> str:
        """Who owns what this visitor keeps on the server (conversations): one owner per
        visitor of each widget, so knowing a conversation id is not enough to extend it.
        ('.' is in no widget id, so two widgets' owners cannot meet.)"""
        return f"widget-{self.widget_id}.{self.visitor}"


_VISITOR = re.compile(r"[0-9a-f]{32}")


def new_visitor() -> str:
    """A visitor id: 128 random bits, as the widget makes one (32 hex digits)."""
    return secrets.token_hex(16)


def check_visitor(visitor: str) -> str:
    if not _VISITOR.fullmatch(visitor):
        raise InvalidRequest("a visitor id is 32 lowercase hex digits")
    return visitor


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, or ``InvalidRequest``: what browsers send."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{origin!r} is not an origin such as https://www.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InvalidRequest(f"{origin!r} is not an origin: no path, query or credentials")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def check_widget_id(widget_id: str) -> str:
    if not (1 <= len(widget_id) <= 64) or not all(c.isalnum() or c in "-_" for c in widget_id):
        raise InvalidRequest("a widget id is 1-64 letters, digits, '-' or '_'")
    return widget_id


def widget_from_spec(widget_id: str, spec: WidgetSpec, *, managed: bool) -> Widget:
    if not spec.origins:
        raise InvalidRequest(f"widget {widget_id!r} needs at least one origin")
    if len(spec.origins) > MAX_ORIGINS:
        raise InvalidRequest(f"a widget may list at most {MAX_ORIGINS} origins")
    origins = frozenset(normalise_origin(o) for o in spec.origins)
    return Widget(check_widget_id(widget_id), origins, validate_kb(spec.kb), managed)


MIN_KEY_CHARS = 32  # as CITEWISE_WIDGET_SECRET must be


def signing_key(settings: WidgetSettings, path: Path) -> str:
    """``CITEWISE_WIDGET_SECRET``, or a random key created once at ``path`` (under
    ``CITEWISE_HOME``).

    The file appears whole or not at all: the key is written to a private temporary file,
    flushed to disk, then hard-linked to ``path``, which fails if ``path`` exists (``O_EXCL``
    semantics). Of processes starting together the first link wins and every other one reads
    that complete key; none can read a file still being written (an empty key meant a 500 on
    every widget call). An empty or short key file is refused, never used."""
    if settings.secret is not None:
        return settings.secret.get_secret_value()
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:  # another process got there first: its key it is
            return _read_key(path)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the widget signing key file {path.name} under CITEWISE_HOME "
                "(the file system refused a hard link); set CITEWISE_WIDGET_SECRET instead"
            ) from exc
    finally:
        temporary.unlink(missing_ok=True)
    return key


def _read_key(path: Path) -> str:
    """The key kept at ``path``; ``FileNotFoundError`` if there is none yet."""
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < MIN_KEY_CHARS:
        raise ConfigurationError(
            f"the widget signing key file {path.name} under CITEWISE_HOME is empty or shorter "
            f"than {MIN_KEY_CHARS} characters: delete it (a new key is made at start; tokens "
            "issued before stop working) or set CITEWISE_WIDGET_SECRET"
        )
    return key


class Widgets:
    """The registered widgets (configuration + Redis) and their tokens."""

    def __init__(
        self, settings: WidgetSettings, secret_path: Path, redis: RedisHandle | None
    ) -> None:
        """``secret_path``: where the signing key is kept when ``CITEWISE_WIDGET_SECRET`` is
        unset."""
        try:
            self._configured = {
                widget_id: widget_from_spec(widget_id, spec, managed=False)
                for widget_id, spec in settings.registered.items()
            }
        except InvalidRequest as exc:
            raise ConfigurationError(f"CITEWISE_WIDGETS: {exc}") from exc
        self._redis = redis
        self._key = signing_key(settings, secret_path)
        self._ttl_s = settings.token_ttl_s
        self._managed: dict[str, Widget] = {}
        self._fetched_at = float("-inf")

    # --- registry ----------------------------------------------------------------------

    async def all(self) -> dict[str, Widget]:
        await self._refresh()
        return {**self._managed, **self._configured}  # configuration wins a name clash

    async def get(self, widget_id: str) -> Widget:
        found = (await self.all()).get(widget_id)
        if found is None:
            raise UnknownWidget(f"no help widget {widget_id!r} is registered")
        return found

    def known_origins(self) -> frozenset[str]:
        """Every origin any widget may run on, as last refreshed (CORS asks synchronously)."""
        widgets = [*self._configured.values(), *self._managed.values()]
        return frozenset(origin for widget in widgets for origin in widget.origins)

    async def refresh_if_stale(self) -> None:
        await self._refresh()

    async def register(self, widget_id: str, spec: WidgetSpec) -> Widget:
        widget = widget_from_spec(widget_id, spec, managed=True)
        if widget_id in self._configured:
            raise InvalidRequest(f"widget {widget_id!r} is set in configuration; change it there")
        record = json.dumps({"origins": sorted(widget.origins), "kb": widget.kb})
        await self._write(lambda r: r.hset(self._hash(), widget_id, record))
        self._managed[widget_id] = widget
        return widget

    async def remove(self, widget_id: str) -> None:
        if widget_id in self._configured:
            raise InvalidRequest(f"widget {widget_id!r} is set in configuration; change it there")
        removed = await self._write(lambda r: r.hdel(self._hash(), widget_id))
        self._managed.pop(widget_id, None)
        if not removed:
            raise UnknownWidget(f"no help widget {widget_id!r} is registered")

    async def _refresh(self) -> None:
        if self._redis is None or time.monotonic() - self._fetched_at < REFRESH_S:
            return
        try:
            stored = await self._redis.arun(lambda r: r.hgetall(self._hash()))
        except RedisUnavailable:
            return  # keep the last known widgets; configured ones always work
        managed = {}
        for raw_id, raw in stored.items():
            widget_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            managed[widget_id] = widget_from_spec(
                widget_id, WidgetSpec.model_validate_json(raw), managed=True
            )
        self._managed = managed
        self._fetched_at = time.monotonic()

    async def _write(self, call: Any) -> Any:
        if self._redis is None:
            raise CacheUnavailable(
                "widgets can only be registered through the API when Redis is on; "
                "use CITEWISE_WIDGETS instead"
            )
        try:
            result = await self._redis.arun(call)
        except RedisUnavailable as exc:
            raise CacheUnavailable("Redis cannot be reached; nothing was changed") from exc
        self._fetched_at = float("-inf")  # re-read on next use
        return result

    def _hash(self) -> str:
        assert self._redis is not None
        return self._redis.key("widgets")

    # --- tokens ------------------------------------------------------------------------

    async def mint(
        self, widget_id: str, origin: str | None, visitor: str | None = None
    ) -> tuple[str, Widget, str]:
        """A page token for a page on ``origin`` (the request's Origin header), for
        ``visitor`` (the id the widget keeps in the browser; a new one when not given):
        the token, the widget, and the visitor id it names (claim ``vis``)."""
        widget = await self.get(check_widget_id(widget_id))
        visitor = check_visitor(visitor) if visitor is not None else new_visitor()
        page = self._page_origin(origin)
        if page not in widget.origins:
            raise OriginNotAllowed(f"help widget {widget_id!r} is not enabled for {page}")
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": widget.widget_id,
            "aud": page,
            "kb": widget.kb,
            "vis": visitor,
            "iat": now,
            "exp": now + self._ttl_s,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), widget, visitor

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    async def verify(self, token: str, origin: str | None) -> Grant:
        """What the token allows, if it is ours, alive, and used from the page it was issued
        to; ``WidgetTokenInvalid`` / ``WidgetTokenExpired`` / ``OriginNotAllowed`` if not."""
        page = self._page_origin(origin)
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=page,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "aud", "kb", "vis"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise WidgetTokenExpired("the widget token has expired; fetch a new one") from exc
        except jwt.InvalidAudienceError as exc:
            raise OriginNotAllowed("this widget token was issued to another site") from exc
        except jwt.InvalidTokenError as exc:
            raise WidgetTokenInvalid("the widget token is not valid") from exc
        visitor = claims["vis"]
        if not isinstance(visitor, str) or not _VISITOR.fullmatch(visitor):
            raise WidgetTokenInvalid("the widget token is not valid")
        widget = await self.get(str(claims["sub"]))
        if page not in widget.origins:  # removed since the token was issued
            raise OriginNotAllowed(f"help widget {widget.widget_id!r} is not enabled for {page}")
        return Grant(widget.widget_id, page, widget.kb, visitor)  # today's kb, if it changed

    @staticmethod
    def _page_origin(origin: str | None) -> str:
        if not origin or origin == "null":
            raise OriginNotAllowed(
                "widget requests must come from a web page (the Origin header is missing)"
            )
        try:
            return normalise_origin(origin)
        except InvalidRequest as exc:
            raise OriginNotAllowed("the Origin header is not a web origin") from exc
