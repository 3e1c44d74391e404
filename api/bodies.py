"""JSON request bodies must be Unicode text.

JSON can spell a lone UTF-16 surrogate (``"\\ud800"``), and Python decodes it into a string
that cannot be encoded as UTF-8 again: the embedding tokenizer failed on one deep inside
``/v1/ask`` (a 500, found by fuzzing), and whatever writes such a string out (Redis, the vector
store) would fail the same way. Every router uses ``TextRoute``, which refuses such a body up
front with a 400 that says why (I-JSON, RFC 7493, forbids them for this reason).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response

from api.admission import AdmittedRoute
from citewise.errors import InvalidRequest

# Any escape in the surrogate range; a properly paired one (an emoji) is fine, so a body that
# has one is parsed to tell.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class TextRoute(AdmittedRoute):
    """An API route whose JSON body is refused when a string in it is not Unicode text (and
    whose requests are admitted first: ``api.admission``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            if _is_json(request) and _has_lone_surrogate(await request.body()):
                raise InvalidRequest(
                    "the request body holds a lone UTF-16 surrogate escape (\\ud800-\\udfff): "
                    "strings must be Unicode text"
                )
            return await handler(request)  # the body read above is cached on the request

        return checked


def _is_json(request: Request) -> bool:
    # Only JSON is read here: a multipart upload must stream to its handler, not into memory.
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    return kind == "application/json" or kind.endswith("+json")


def _has_lone_surrogate(body: bytes) -> bool:
    if not _SURROGATE_ESCAPE.search(body):
        return False
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False  # not JSON: FastAPI answers that with its own 422
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):
        return False
    return False
