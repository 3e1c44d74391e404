"""``/healthz`` and ``/readyz``: the state of each component, and whether to send traffic here.

The vector store and the embedding model are required: without either no question can be
answered, so the service is ``not_ready`` (HTTP 503). The knowledge bases are listed, not
required: a deployment names its own (``docs``, ``support``...), and a fresh one with none yet
is ready to be given some over ``POST /v1/kbs/{kb}/ingest``. Redis and the job queue on it make
the service cheaper and able to run background work, but answers do not depend on them (see
``citewise.redis_client``): when they fail the service is ``degraded`` and still HTTP 200. So
is it when ingest jobs wait and no worker listens on the queue (RQ's worker registrations,
renewed by heartbeats): they would wait for ever. Details are fixed phrases: no addresses,
paths or exception text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.bodies import TextRoute
from api.deps import ServicesDep
from api.errors import error_body
from citewise.knowledge_base import STAGING_SUFFIX
from citewise.threads import run_blocking
from citewise.wiring import Services

Status = Literal["ok", "degraded", "down"]
REQUIRED = ("chroma", "model")
OPTIONAL_CHECKS = ("redis_reachable", "queue_served")  # false: degraded, not not_ready
NO_WORKER = "ingest jobs are waiting and no worker is running (citewise worker)"
SHOWN_NAMES = 20  # knowledge bases named in the component's detail; the body lists them all


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
    knowledge_bases: list[str] | None  # None: the store could not be asked

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
        and dashboards), ``degraded`` and ``error`` when they apply, ``knowledge_bases``
        (``{count, names}``, null when the store cannot be asked) and ``components``."""
        parts = self.components
        checks = {
            "model_loaded": parts["model"].status == "ok",
            "store_reachable": parts["chroma"].status == "ok",
        }
        if self.redis_in_use:
            checks["redis_reachable"] = parts["redis"].status == "ok"
            if checks["redis_reachable"]:  # else the queue's state is unknown, and Redis's fault
                checks["queue_served"] = parts["queue"].status == "ok"
        body: dict[str, Any] = {"status": self.status, "checks": checks}
        degraded = [n for n in OPTIONAL_CHECKS if checks.get(n) is False]
        if degraded:
            body["degraded"] = degraded
        if not self.ready:
            failing = ", ".join(n for n, ok in checks.items() if not ok and n not in degraded)
            body.update(error_body("not_ready", f"failing checks: {failing}"))
        names = self.knowledge_bases
        body["knowledge_bases"] = None if names is None else {"count": len(names), "names": names}
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
    if names is not None:  # a gated ingest's staging copy is not one of them
        names = [name for name in names if not name.endswith(STAGING_SUFFIX)]
    found["knowledge_bases"] = _listing(names)
    found["redis"], found["queue"] = await _redis_and_queue(services)
    return Readiness(found, services.settings.redis.enabled, names)


def _listing(names: list[str] | None) -> Component:
    if names is None:
        return Component("down", "unknown: the vector store is unreachable")
    if not names:
        return Component("ok", "none ingested yet")
    shown = ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
    return Component("ok", f"{len(names)} present: {shown}")


async def _redis_and_queue(services: Services) -> tuple[Component, Component]:
    # The job queue lives in the same Redis: one ping answers for both.
    if not services.settings.redis.enabled:
        off = "switched off (CITEWISE_REDIS_URL=off)"
        return Component("ok", off), Component("ok", f"no queue: Redis {off}")
    if services.redis is None or services.jobs is None:
        return (
            Component("down", "the embedded Redis could not start: caches are off"),
            Component("degraded", "no Redis to hold the queue"),
        )
    if not await services.redis.ping():
        return (
            Component(
                "down", "unreachable: caches bypassed, rate limits follow their failure policy"
            ),
            Component("degraded", "Redis unreachable"),
        )
    reachable = Component("ok", "reachable")
    try:
        queue = await run_blocking(services.jobs.health)
    except (redis.RedisError, OSError):
        return reachable, Component("degraded", "the queue could not be read")
    if not queue.served:
        return reachable, Component("degraded", NO_WORKER)
    if queue.waiting:
        return reachable, Component("ok", "Redis reachable, a worker takes the waiting jobs")
    return reachable, Component("ok", "Redis reachable, no job waiting")


router = APIRouter(route_class=TextRoute)


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """Liveness: the process is up and serving requests."""
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"])
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness, with the state of each component (`ok`, `degraded` or `down`).

    The store and the model decide: either down is 503 `not_ready`. The knowledge bases are
    listed (`knowledge_bases`: count and names), not required: none at all is still ready.
    Redis and the job queue on it are reported but do not decide: without them answers are
    still served (uncached, rate limits per CITEWISE_RATE_LIMIT_FAIL_OPEN), so an unreachable
    Redis makes the status `degraded` with HTTP 200, not 503; so do ingest jobs waiting with
    no worker running (`queue_served: false`).
    """
    found = await check(services)
    return JSONResponse(found.body(), status_code=200 if found.ready else 503)
