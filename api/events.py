"""The answer event stream as server-sent events (framing by sse-starlette).

Event names and data, in order (documented once, in the README):

    event: sources    data: {"sources": [ {n, chunk_id, source, title, heading, page, url,
                                           score, similarity, text}, ... ]}
    event: delta      data: {"text": "..."}                  (repeated)
    event: citations  data: {"citations": [ {n, chunk_id, ..., quote, start, end, url,
                                             supported, unsupported_claims}, ... ]}
    event: done       data: {"answer_id": "...", "refused": false, "cached": false,
                             "conversation_id": "..." or null}

or, when something fails after the stream started, instead of the rest:

    event: error      data: {"code": "llm_timeout", "message": "..."}

Comment lines (``: ping``) are heartbeats while the model thinks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from citewise.answer.answerer import CitationsEvent, DeltaEvent, DoneEvent, Event, SourcesEvent
from citewise.errors import CitewiseError

log = logging.getLogger("citewise.api")


def payload(event: Event) -> dict[str, Any]:
    match event:
        case SourcesEvent(sources=sources):
            return {"sources": sources}
        case DeltaEvent(text=text):
            return {"text": text}
        case CitationsEvent(citations=citations):
            return {"citations": [c.to_dict() for c in citations]}
        case DoneEvent(answer_id=answer_id, refused=refused, cached=cached):
            return {
                "answer_id": answer_id,
                "refused": refused,
                "cached": cached,
                "conversation_id": event.conversation_id,
            }
    raise TypeError(f"unknown event {event!r}")


async def as_sse(first: Event, rest: AsyncIterator[Event]) -> AsyncIterator[dict[str, str]]:
    """Frame events for ``EventSourceResponse``; failures end the stream with ``error``."""
    try:
        yield _frame(first)
        async for event in rest:
            yield _frame(event)
    except CitewiseError as exc:
        yield {"event": "error", "data": json.dumps({"code": exc.code, "message": str(exc)})}
    except Exception:
        log.exception("answer stream failed")
        message = "something went wrong on our side; it has been logged"
        yield {"event": "error", "data": json.dumps({"code": "internal_error", "message": message})}


def _frame(event: Event) -> dict[str, str]:
    return {"event": event.name, "data": json.dumps(payload(event))}
