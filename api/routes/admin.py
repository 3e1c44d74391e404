"""Admin endpoints (admin keys only)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.bodies import TextRoute
from api.deps import ServicesDep
from api.schemas import FlushRequest, FlushResponse
from api.security import AdminCaller
from citewise.errors import CacheUnavailable
from citewise.knowledge_base import validate_kb
from citewise.redis_client import RedisUnavailable
from citewise.serving import answer_cache
from citewise.serving.missing_docs import Group, group_outcomes, parse_since
from citewise.settings import WidgetSpec
from citewise.threads import run_blocking

router = APIRouter(route_class=TextRoute, prefix="/v1/admin", tags=["admin"])


@router.post("/cache/flush", response_model=FlushResponse)
async def flush_cache(body: FlushRequest, services: ServicesDep, _: AdminCaller) -> dict[str, Any]:
    """Retire every cached answer of one knowledge base (or of all) at once."""
    kb = validate_kb(body.kb) if body.kb is not None else None
    if services.redis is None:
        raise CacheUnavailable("there is no answer cache: Redis is switched off")
    try:
        await answer_cache.flush(services.redis, kb)
    except RedisUnavailable as exc:
        raise CacheUnavailable("Redis cannot be reached; nothing was flushed") from exc
    return {"flushed": "answers", "kb": kb}


@router.get("/widgets")
async def list_widgets(services: ServicesDep, _: AdminCaller) -> dict[str, Any]:
    """Every registered help widget: from configuration and from this API."""
    widgets = await services.widgets.all()
    return {"widgets": [w.to_dict() for _, w in sorted(widgets.items())]}


@router.put("/widgets/{widget_id}")
async def register_widget(
    widget_id: str, body: WidgetSpec, services: ServicesDep, _: AdminCaller
) -> dict[str, Any]:
    """Register a help widget (or replace its origins and knowledge base)."""
    return (await services.widgets.register(widget_id, body)).to_dict()


@router.delete("/widgets/{widget_id}", status_code=204)
async def remove_widget(widget_id: str, services: ServicesDep, _: AdminCaller) -> Response:
    """Remove a help widget: its tokens stop working within seconds."""
    await services.widgets.remove(widget_id)
    return Response(status_code=204)


@router.get("/report")
async def missing_documents(
    services: ServicesDep,
    _: AdminCaller,
    kb: str | None = None,
    since: str = "30d",
    limit: int = Query(default=50, ge=1, le=1000),
) -> dict[str, Any]:
    """Questions the documents could not answer or users disliked, grouped, most frequent first."""
    if services.outcomes is None:
        raise CacheUnavailable("the outcome log is kept in Redis, which is switched off here")
    outcomes = services.outcomes
    start = parse_since(since, time.time())
    kb = validate_kb(kb) if kb is not None else None

    def build() -> list[Group]:
        return group_outcomes(outcomes.read(kb=kb, since=start), services.embeddings)

    groups = await run_blocking(build)
    return {"kb": kb, "since": start, "groups": [g.to_dict() for g in groups[:limit]]}
