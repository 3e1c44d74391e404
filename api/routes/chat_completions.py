"""OpenAI-compatible face: ``/v1/models`` and ``/v1/chat/completions``.

The model name picks the knowledge base. Answers keep their ``[n]`` markers; the verified
citations travel in an extension field, ``citations`` (with ``refused``), on the completion
object, or on the final chunk when streaming.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from api.bodies import TextRoute
from api.deps import ServicesDep
from api.security import CACHE_HEADER, ChatCaller, SearchCaller
from citewise.answer.answerer import Question
from citewise.answer.generators.base import Turn
from citewise.errors import CitewiseError, InvalidRequest
from citewise.serving.access import Caller
from citewise.shapes import Citation, CitationsEvent, DeltaEvent, DoneEvent, Event, SourcesEvent

router = APIRouter(route_class=TextRoute, tags=["openai-compatible"])


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model: str = Field(description="The knowledge base to answer from.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    stream: bool = False
    footnotes: bool | None = Field(
        default=None,
        description="End the answer with the cited sources, in the text itself (for clients "
        "that drop the citations field). Unset: as CITEWISE_CHAT_FOOTNOTES says for the "
        "knowledge base.",
    )
    # Other OpenAI parameters (temperature, max_tokens, ...) are accepted and ignored.
    model_config = {"extra": "allow"}


@router.get("/v1/models")
async def list_models(services: ServicesDep, caller: SearchCaller) -> dict[str, Any]:
    """Knowledge bases, listed as models (a help widget's token sees its own only)."""
    names = [kb for kb in services.store.knowledge_bases() if caller.may_use(kb)]
    return {
        "object": "list",
        "data": [
            {"id": kb, "object": "model", "created": 0, "owned_by": "citewise"} for kb in names
        ],
    }


def question_of(body: ChatRequest, caller: Caller) -> Question:
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise InvalidRequest("the last message must come from the user")
    history = [Turn(m.role, m.text()) for m in turns[:-1]]  # type: ignore[arg-type]
    kb = caller.knowledge_base(body.model, body.model)  # a user's token may not grant it
    return Question(text=turns[-1].text(), kb=kb, history=history)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatRequest, services: ServicesDep, caller: ChatCaller
) -> JSONResponse | EventSourceResponse:
    """Answer the last user message from the knowledge base named by ``model``.

    Stateless, as the protocol is: the history comes in ``messages``, and no server-side
    conversation is kept. Answers are cached like ``/v1/ask``'s (header ``X-Citewise-Cache``).
    """
    question = question_of(body, caller)
    created = int(time.time())
    footnotes = body.footnotes
    if footnotes is None:
        footnotes = services.settings.answering.footnotes_for(question.kb)
    if not body.stream:
        asked = await services.asking.ask(question, owner=caller.owner, converse=False)
        answer = asked.whole()
        content = answer.answer + (footnote_list(answer.citations) if footnotes else "")
        completion = {
            "id": f"chatcmpl-{answer.answer_id}",
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "citations": [c.model_dump(mode="json") for c in answer.citations],
            "refused": answer.refused,
        }
        return JSONResponse(completion, headers={CACHE_HEADER: asked.cache})
    cache, events = await services.asking.stream(question, owner=caller.owner, converse=False)
    first = await anext(events)  # bad requests fail here, as plain 4xx
    return EventSourceResponse(
        _chunks(first, events, body.model, created, footnotes=footnotes),
        ping=services.settings.answering.sse_ping_s,
        headers={CACHE_HEADER: cache},
    )


async def _chunks(
    first: Event, rest: AsyncIterator[Event], model: str, created: int, *, footnotes: bool
) -> AsyncIterator[str]:
    # One id for every chunk (OpenAI's contract); the answer's id is known from the first event.
    answer_id = first.answer_id if isinstance(first, SourcesEvent) else ""
    identifier = f"chatcmpl-{answer_id or uuid.uuid4().hex}"
    citations: list[dict[str, Any]] = []

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
        return json.dumps(
            {
                "id": identifier,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
        )

    async def all_events() -> AsyncIterator[Event]:
        yield first
        async for event in rest:
            yield event

    try:
        yield chunk({"role": "assistant", "content": ""}, None)
        async for event in all_events():
            match event:
                case DeltaEvent(text=text):
                    yield chunk({"content": text}, None)
                case CitationsEvent(citations=found):
                    citations = [c.model_dump(mode="json") for c in found]
                    if footnotes and found:
                        yield chunk({"content": footnote_list(found)}, None)
                case DoneEvent(refused=refused):
                    yield chunk({}, "stop", citations=citations, refused=refused)
    except CitewiseError as exc:
        yield json.dumps({"error": {"code": exc.code, "message": str(exc), "type": exc.code}})
    yield "[DONE]"


def footnote_list(citations: Sequence[Citation]) -> str:
    """The cited sources as text after the answer, one line per [n]: where each marker points,
    for a client that shows the text only ("[1] Handbook › Inviting people: <link>")."""
    lines: dict[int, str] = {}
    for citation in citations:
        if citation.n in lines:
            continue
        title = citation.title or citation.source
        heading = citation.heading.split(" > ")[-1] if citation.heading else ""
        where = f"{title} › {heading}" if heading and heading != title else title
        lines[citation.n] = f"[{citation.n}] {where}: {citation.url}"
    if not lines:
        return ""
    return "\n\nSources:\n" + "\n".join(lines[n] for n in sorted(lines))
