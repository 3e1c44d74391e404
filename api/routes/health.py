"""``/healthz`` and ``/readyz``: the state of each component, and whether to send traffic here.

The vector store, the embedding model and the default knowledge base are required: without
any of them no question can be answered, so the service is ``not_ready`` (HTTP 503). Redis and
the job queue on it make the service cheaper and able to run background work, but answers do
not depend on them (see ``citewise.redis_client``): when they fail the service is ``degraded``
and still HTTP 200. Details are fixed phrases: no addresses, paths or exception text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.bodies import TextRoute
from api.deps import ServicesDep
from api.errors import error_body
from citewise.threads import run_blocking
from citewise.wiring import Services

Status = Literal["ok", "degraded", "down"]
REQUIRED = ("chroma", "model", "default_kb")


@dataclass(frozen=True)
class Component:
    status: Status
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class Readiness:
    components: dict[str, Component]
    redis_in_use: bool

    @property
    def ready(self) -> bool:
        return all(self.components[name].status == "ok" for name in REQUIRED)

    @property
    def status(self) -> str:
        if not self.ready:
            return "not_ready"
        healthy = all(c.status == "ok" for c in self.components.values())
        return "ready" if healthy else "degraded"

    def body(self) -> dict[str, Any]:
        """The ``/readyz`` body: ``status``, the boolean ``checks`` (kept for existing probes
        and dashboards), ``degraded`` and ``error`` when they apply, and ``components``."""
        parts = self.components
        checks = {
            "model_loaded": parts["model"].status == "ok",
            "store_reachable": parts["chroma"].status == "ok",
            "default_kb_present": parts["default_kb"].status == "ok",
        }
        if self.redis_in_use:
            checks["redis_reachable"] = parts["redis"].status == "ok"
        body: dict[str, Any] = {"status": self.status, "checks": checks}
        if self.redis_in_use and not checks["redis_reachable"]:
            body["degraded"] = ["redis_reachable"]
        if not self.ready:
            failing = ", ".join(n for n, ok in checks.items() if not ok and n != "redis_reachable")
            body.update(error_body("not_ready", f"failing checks: {failing}"))
        body["components"] = {name: c.to_dict() for name, c in parts.items()}
        return body


async def check(services: Services) -> Readiness:
    """Ask every component now (the store and Redis each get one call)."""
    found: dict[str, Component] = {}
    try:
        names: list[str] | None = await run_blocking(services.store.knowledge_bases)
    except Exception:
        names = None
    if names is None:
        found["chroma"] = Component("down", "vector store unreachable")
    else:
        found["chroma"] = Component("ok", "vector store reachable")
    if services.model.loaded:
        found["model"] = Component("ok", "embedding model loaded")
    else:
        found["model"] = Component("down", "embedding model not loaded yet")
    kb = services.settings.core.default_kb
    if names is None:
        found["default_kb"] = Component("down", "unknown: the vector store is unreachable")
    elif kb in names:
        found["default_kb"] = Component("ok", f"knowledge base {kb!r} present")
    else:
        found["default_kb"] = Component("down", f"knowledge base {kb!r} not ingested yet")
    found["redis"], found["queue"] = await _redis_and_queue(services)
    return Readiness(found, redis_in_use=services.settings.redis.enabled)


async def _redis_and_queue(services: Services) -> tuple[Component, Component]:
    # The job queue lives in the same Redis: one ping answers for both.
    if not services.settings.redis.enabled:
        off = "switched off (CITEWISE_REDIS_URL=off)"
        return Component("ok", off), Component("ok", f"no queue: Redis {off}")
    if services.redis is None:
        return (
            Component("down", "the embedded Redis could not start: caches are off"),
            Component("degraded", "no Redis to hold the queue"),
        )
    if await services.redis.ping():
        return Component("ok", "reachable"), Component("ok", "Redis reachable")
    return (
        Component("down", "unreachable: caches bypassed, rate limits follow their failure policy"),
        Component("degraded", "Redis unreachable"),
    )


router = APIRouter(route_class=TextRoute)


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """Liveness: the process is up and serving requests."""
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"])
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness, with the state of each component (`ok`, `degraded` or `down`).

    The store, the model and the default knowledge base decide: any of them down is 503
    `not_ready`. Redis and the job queue on it are reported but do not decide: without them
    answers are still served (uncached, rate limits per CITEWISE_RATE_LIMIT_FAIL_OPEN), so an
    unreachable Redis makes the status `degraded` with HTTP 200, not 503.
    """
    found = await check(services)
    return JSONResponse(found.body(), status_code=200 if found.ready else 503)
