"""Search, ask (whole and streamed) and the health probes."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from api.deps import ServicesDep
from api.errors import error_body
from api.events import as_sse
from api.schemas import AskRequest, AskResponse, SearchRequest, SearchResponse
from citewise.answering import Question, hit_record
from citewise.generators.base import Turn

router = APIRouter()


def question_of(body: AskRequest, default_kb: str) -> Question:
    return Question(
        text=body.question,
        kb=body.kb or default_kb,
        history=[Turn(m.role, m.content) for m in body.history],
        k=body.k,
        filters=body.filters,
    )


@router.post("/v1/search", response_model=SearchResponse, tags=["answers"])
async def search(body: SearchRequest, services: ServicesDep) -> dict[str, Any]:
    """The best passages for a query, without an answer."""
    hits = await asyncio.to_thread(
        services.retriever.search,
        body.query,
        kb=body.kb or services.settings.default_kb,
        k=body.k,
        mode=body.mode,
        filters=body.filters,
    )
    return {"hits": [hit_record(rank, h) for rank, h in enumerate(hits, start=1)]}


@router.post("/v1/ask", response_model=AskResponse, tags=["answers"])
async def ask(body: AskRequest, services: ServicesDep) -> dict[str, Any]:
    """A grounded answer with verified citations, all at once."""
    answer = await services.answerer.ask(question_of(body, services.settings.default_kb))
    return answer.to_dict()


@router.post(
    "/v1/ask/stream",
    tags=["answers"],
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Answer events."}},
)
async def ask_stream(body: AskRequest, services: ServicesDep) -> EventSourceResponse:
    """The same answer as server-sent events: sources, delta..., citations, done (or error)."""
    events = services.answerer.stream(question_of(body, services.settings.default_kb))
    # Pull the first event before answering: a bad request still gets a plain 4xx.
    first = await anext(events)
    return EventSourceResponse(
        as_sse(first, events), ping=services.settings.sse_ping_s, send_timeout=30
    )


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """Liveness: the process is up and serving requests."""
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"])
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: the store answers, the model is loaded, the default knowledge base exists."""
    checks: dict[str, bool] = {"model_loaded": services.embeddings.loaded}
    try:
        names = await asyncio.to_thread(services.store.knowledge_bases)
        checks["store_reachable"] = True
        checks["default_kb_present"] = services.settings.default_kb in names
    except Exception:
        checks["store_reachable"] = False
        checks["default_kb_present"] = False
    ready = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
    if not ready:
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        body.update(error_body("not_ready", f"failing checks: {failing}"))
    return JSONResponse(body, status_code=200 if ready else 503)
