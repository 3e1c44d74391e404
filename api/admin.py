"""Admin endpoints (admin keys only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ServicesDep
from api.schemas import FlushRequest, FlushResponse
from api.security import AdminCaller
from citewise import answer_cache
from citewise.errors import CacheUnavailable
from citewise.knowledge_base import validate_kb
from citewise.redis_client import RedisUnavailable

router = APIRouter(prefix="/v1/admin", tags=["admin"])


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
