"""Search and ask (whole and streamed): the endpoints people ask the knowledge base through."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sse_starlette import EventSourceResponse

from api.bodies import TextRoute
from api.deps import ServicesDep
from api.events import as_sse
from api.schemas import AskRequest, SearchRequest, SearchResponse
from api.security import CACHE_HEADER, AskCaller, SearchCaller
from citewise.answer.answerer import Question, hit_record
from citewise.answer.generators.base import Turn
from citewise.serving.access import Caller
from citewise.shapes import Answer
from citewise.threads import run_blocking

router = APIRouter(route_class=TextRoute)

_CACHE_DOC = {
    CACHE_HEADER: {
        "description": "hit (from the answer cache), miss (computed and cached) or bypass "
        "(computed; no cache for this request: Redis away, or the provider is not cacheable)",
        "schema": {"type": "string"},
    }
}


def question_of(body: AskRequest, caller: Caller, default_kb: str) -> Question:
    return Question(
        text=body.question,
        kb=caller.knowledge_base(body.kb, default_kb),
        history=[Turn(m.role, m.content) for m in body.history],
        k=body.k,
        filters=body.filters,
    )


@router.post("/v1/search", response_model=SearchResponse, tags=["answers"])
async def search(
    body: SearchRequest, services: ServicesDep, caller: SearchCaller
) -> SearchResponse:
    """The best passages for a query, without an answer."""
    kb = caller.knowledge_base(body.kb, services.settings.core.default_kb)
    query = services.retriever.query(
        body.query, kb=kb, k=body.k, mode=body.mode, filters=body.filters
    )
    hits = await run_blocking(services.retriever.search, query)
    base_url = services.settings.answering.kb_base_urls.get(kb, "")
    return SearchResponse(hits=[hit_record(n, h, base_url) for n, h in enumerate(hits, start=1)])


@router.post(
    "/v1/ask",
    response_model=Answer,
    tags=["answers"],
    responses={200: {"headers": _CACHE_DOC}},
)
async def ask(body: AskRequest, services: ServicesDep, caller: AskCaller) -> Response:
    """A grounded answer with verified citations, all at once."""
    question = question_of(body, caller, services.settings.core.default_kb)
    asked = await services.asking.ask(question, body.conversation_id, caller.owner)
    # Sent as bytes: a cached answer is stored ready to send and is not parsed again.
    return Response(
        asked.body(), media_type="application/json", headers={CACHE_HEADER: asked.cache}
    )


@router.post(
    "/v1/ask/stream",
    tags=["answers"],
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Answer events.",
            "headers": _CACHE_DOC,
        }
    },
)
async def ask_stream(
    body: AskRequest, services: ServicesDep, caller: AskCaller
) -> EventSourceResponse:
    """The same answer as server-sent events: sources, delta..., citations, done (or error)."""
    question = question_of(body, caller, services.settings.core.default_kb)
    cache, events = await services.asking.stream(question, body.conversation_id, caller.owner)
    # Pull the first event before answering: a bad request still gets a plain 4xx.
    first = await anext(events)
    return EventSourceResponse(
        as_sse(first, events),
        ping=services.settings.answering.sse_ping_s,
        send_timeout=30,
        headers={CACHE_HEADER: cache},
    )
