"""Vercel AI SDK face: ``POST /v1/ui/chat`` speaks the AI SDK's UI message stream (v1).

A chat front end built with ``useChat`` (``@ai-sdk/react``, ``DefaultChatTransport``) posts
its UI messages here and reads the answer as the SDK's own stream parts, as server-sent
``data:`` lines with the header ``x-vercel-ai-ui-message-stream: v1``:

    {"type": "start", "messageId": "<answer id>"}
    {"type": "source-url", "sourceId": "1", "url": "<deep link>", "title": "..."}   per source
    {"type": "text-start", "id": "text-1"}
    {"type": "text-delta", "id": "text-1", "delta": "..."}                          repeated
    {"type": "text-end", "id": "text-1"}
    {"type": "data-citations", "data": [<verified citation>, ...]}
    {"type": "finish", "messageMetadata": {"answerId", "refused", "cached"}}
    [DONE]

or ``{"type": "error", "errorText": "..."}`` when something fails after the stream started.
The knowledge base is the body's ``kb`` (``useChat``'s transport merges its ``body`` option
into every request); the conversation is the messages themselves, as in the OpenAI face.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from api.bodies import TextRoute
from api.deps import ServicesDep
from api.security import CACHE_HEADER, AskCaller
from citewise.answer.answerer import Question
from citewise.answer.generators.base import Turn
from citewise.errors import CitewiseError, InvalidRequest
from citewise.shapes import CitationsEvent, DeltaEvent, DoneEvent, Event, SourcesEvent

router = APIRouter(route_class=TextRoute, tags=["ai-sdk"])
log = logging.getLogger("citewise.api")

STREAM_HEADERS = {"x-vercel-ai-ui-message-stream": "v1", "x-accel-buffering": "no"}
TEXT_ID = "text-1"  # one text part per answer


class UIMessagePart(BaseModel):
    """A part of a UI message; only ``text`` parts are read, the others are ignored."""

    type: str
    text: str | None = None
    model_config = {"extra": "allow"}


class UIMessage(BaseModel):
    id: str = ""
    role: Literal["system", "user", "assistant"]
    parts: list[UIMessagePart] = Field(default_factory=list, max_length=200)
    model_config = {"extra": "allow"}

    def text(self) -> str:
        return "".join(p.text or "" for p in self.parts if p.type == "text")


class UIChatRequest(BaseModel):
    """What ``useChat``'s ``DefaultChatTransport`` sends, plus the knowledge base."""

    messages: list[UIMessage] = Field(min_length=1, max_length=100)
    kb: str | None = Field(default=None, description="The knowledge base to answer from.")
    id: str | None = Field(default=None, description="The chat's id (not used: stateless).")
    # trigger, messageId and the front end's own fields are accepted and ignored.
    model_config = {"extra": "allow"}


def question_of(body: UIChatRequest, kb: str) -> Question:
    turns = [m for m in body.messages if m.role in ("user", "assistant") and m.text().strip()]
    if not turns or turns[-1].role != "user":
        raise InvalidRequest("the last message must be the user's, with a text part")
    history = [Turn(m.role, m.text()) for m in turns[:-1]]  # type: ignore[arg-type]
    return Question(text=turns[-1].text(), kb=kb, history=history)


@router.post(
    "/v1/ui/chat",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "The answer as AI SDK UI message stream parts.",
        }
    },
)
async def ui_chat(
    body: UIChatRequest, services: ServicesDep, caller: AskCaller
) -> EventSourceResponse:
    """Answer the last user message for a ``useChat`` front end (AI SDK 5 and later)."""
    kb = caller.knowledge_base(body.kb, services.settings.core.default_kb)
    question = question_of(body, kb)
    cache, events = await services.asking.stream(question, owner=caller.owner, converse=False)
    first = await anext(events)  # bad requests fail here, as plain 4xx
    return EventSourceResponse(
        _parts(first, events),
        ping=services.settings.answering.sse_ping_s,
        send_timeout=30,
        headers={CACHE_HEADER: cache, **STREAM_HEADERS},
    )


async def _parts(first: Event, rest: AsyncIterator[Event]) -> AsyncIterator[str]:
    async def all_events() -> AsyncIterator[Event]:
        yield first
        async for event in rest:
            yield event

    text_open = False
    try:
        async for event in all_events():
            match event:
                case SourcesEvent(sources=sources):
                    yield _part(type="start", messageId=event.answer_id or None)
                    for source in sources:
                        title = source.title or source.source
                        if source.heading and source.heading != source.title:
                            title = f"{title} › {source.heading.split(' > ')[-1]}"
                        yield _part(
                            type="source-url", sourceId=str(source.n), url=source.url, title=title
                        )
                case DeltaEvent(text=text):
                    if not text_open:
                        yield _part(type="text-start", id=TEXT_ID)
                        text_open = True
                    yield _part(type="text-delta", id=TEXT_ID, delta=text)
                case CitationsEvent(citations=citations):
                    if text_open:
                        yield _part(type="text-end", id=TEXT_ID)
                        text_open = False
                    found = [c.model_dump(mode="json") for c in citations]
                    yield _part(type="data-citations", data=found)
                case DoneEvent(refused=refused, cached=cached, answer_id=answer_id):
                    metadata = {"answerId": answer_id, "refused": refused, "cached": cached}
                    yield _part(type="finish", messageMetadata=metadata)
    except CitewiseError as exc:
        yield _part(type="error", errorText=str(exc))
    except Exception:
        log.exception("UI message stream failed")
        yield _part(type="error", errorText="something went wrong on our side; it has been logged")
    yield "[DONE]"


def _part(**fields: Any) -> str:
    return json.dumps({k: v for k, v in fields.items() if v is not None})
