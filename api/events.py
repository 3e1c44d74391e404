"""The answer event stream as server-sent events (framing by sse-starlette).

Event names and data, in order (documented once, in the README):

    event: sources    data: {"sources": [ {n, chunk_id, source, title, heading, page, url,
                                           score, similarity, text}, ... ]}
    event: delta      data: {"text": "..."}                  (repeated)
    event: citations  data: {"citations": [ {n, chunk_id, ..., quote, start, end, url,
                                             supported, unsupported_claims}, ... ]}
    event: done       data: {"answer_id": "...", "refused": false, "cached": false,
                             "conversation_id": "..." or null, "answer": "..."}

or, when something fails after the stream started, instead of the rest:

    event: error      data: {"code": "llm_timeout", "message": "..."}

Comment lines (``: ping``) are heartbeats while the model thinks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from api.errors import INTERNAL_MESSAGE
from citewise.errors import CitewiseError
from citewise.shapes import ErrorEvent, Event

log = logging.getLogger("citewise.api")


async def as_sse(first: Event, rest: AsyncIterator[Event]) -> AsyncIterator[dict[str, str]]:
    """Frame events for ``EventSourceResponse``; failures end the stream with ``error``."""
    try:
        yield _frame(first)
        async for event in rest:
            yield _frame(event)
    except CitewiseError as exc:
        yield _frame(ErrorEvent(code=exc.code, message=str(exc)))
    except Exception:
        log.exception("answer stream failed")
        yield _frame(ErrorEvent(code="internal_error", message=INTERNAL_MESSAGE))


def _frame(event: Event | ErrorEvent) -> dict[str, str]:
    return {"event": event.name, "data": json.dumps(event.model_dump(mode="json"))}
