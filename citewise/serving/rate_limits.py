"""Rate limits per client IP and per API key, for each route family, kept in Redis.

The counting is the ``limits`` library's (Redis storage, Lua scripts, one round trip per
check), sharing Citewise's connection pool and key prefix (``prefix:rl:...``; every key
expires after two windows). Families: ``search`` (search, models), ``ask`` (ask, stream,
chat completions), ``admin``, ``widget`` (widget token exchange, feedback). Each has a limit
per client IP, one per key and, for the families a help widget uses, one per widget, in
``limits`` notation (``"60/minute"``, ``"10/second;500/hour"``, ``"none"``).

The default strategy is the sliding-window counter: the current and the previous fixed
window's counts, the previous one weighted by how much of it still overlaps the sliding
window. It takes O(1) memory per client, where the exact moving window keeps one timestamp per
request (available as ``CITEWISE_RATE_LIMIT_STRATEGY=moving-window``).

When Redis cannot be reached the policy decides (``CITEWISE_RATE_LIMIT_FAIL_OPEN``): let the
request through (default: answers matter more than limits) or answer 503.
"""

from __future__ import annotations

import logging
import math
import time

import limits
from limits.aio.storage import RedisStorage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.util import WindowStats

from citewise.errors import ConfigurationError, RateLimited, RateLimiterUnavailable
from citewise.redis_client import RedisHandle, RedisUnavailable
from citewise.settings import RateFamily, RateLimitSettings, RateScope

log = logging.getLogger("citewise.limits")

Family = RateFamily
Scope = RateScope
FAMILIES: tuple[Family, ...] = ("search", "ask", "admin", "widget")
SCOPES: tuple[Scope, ...] = ("ip", "key", "widget")


NO_LIMIT = {"", "none", "off"}
_SCOPE_NAMES: dict[Scope, str] = {"ip": "client", "key": "API key", "widget": "help widget"}


def _parse(variable: str, value: str) -> list[limits.RateLimitItem]:
    if value.strip().lower() in NO_LIMIT:
        return []
    try:
        return list(limits.parse_many(value))
    except ValueError as exc:
        raise ConfigurationError(
            f"{variable}={value!r} is not a rate limit such as '60/minute'"
        ) from exc


class Limiter:
    """Checks a request against its family's limits; ``None`` handle means no limits."""

    def __init__(self, handle: RedisHandle | None, settings: RateLimitSettings) -> None:
        self._handle = handle
        self._fail_open = settings.fail_open
        self._limits: dict[Family, dict[Scope, list[limits.RateLimitItem]]] = {}
        rates = settings.rates()
        for family in FAMILIES:
            self._limits[family] = {}
            for scope in SCOPES:  # a family/scope pair without a setting has no limit
                variable = RateLimitSettings.variable(family, scope)
                self._limits[family][scope] = _parse(variable, rates.get((family, scope), "none"))
        self._strategy: RateLimiter | None = None
        if handle is not None:
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=handle.key("rl"),
                connection_pool=handle.aio.connection_pool,  # type: ignore[arg-type]
            )
            if settings.strategy == "moving-window":
                self._strategy = MovingWindowRateLimiter(storage)
            else:
                self._strategy = SlidingWindowCounterRateLimiter(storage)

    @property
    def active(self) -> bool:
        return self._strategy is not None and any(
            items for scopes in self._limits.values() for items in scopes.values()
        )

    async def check(self, family: Family, scope: Scope, who: str) -> None:
        """Count one request of ``who`` (a client IP or a key's owner name) against the
        family's limits for that scope; ``RateLimited`` if it is over one."""
        strategy, handle = self._strategy, self._handle
        if strategy is None or handle is None:
            return
        for item in self._limits[family][scope]:

            async def hit(_: object, item: limits.RateLimitItem = item) -> bool:
                return await strategy.hit(item, family, scope, who)

            async def stats(_: object, item: limits.RateLimitItem = item) -> WindowStats:
                return await strategy.get_window_stats(item, family, scope, who)

            try:
                if await handle.arun(hit):
                    continue
                window = await handle.arun(stats)
            except RedisUnavailable as exc:
                if self._fail_open:
                    return
                raise RateLimiterUnavailable(
                    "rate limits cannot be checked right now; try again shortly"
                ) from exc
            retry_after = max(1, math.ceil(window.reset_time - time.time()))
            raise RateLimited(
                f"rate limit of {item} per {_SCOPE_NAMES[scope]} reached; retry in {retry_after}s",
                retry_after,
            )
