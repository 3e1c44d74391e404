"""The help widget's face: its script, its page tokens and its visitors' feedback."""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.bodies import TextRoute
from api.deps import ServicesDep
from api.security import FeedbackCaller, TokenExchange, client_ip
from citewise.errors import CacheUnavailable
from citewise.serving.outcomes import MAX_COMMENT_CHARS

router = APIRouter(route_class=TextRoute, tags=["help widget"])

SCRIPT_MAX_AGE_S = 300  # a new release reaches pages within five minutes


class TokenRequest(BaseModel):
    widget_id: str = Field(max_length=64, examples=["docs-site"])
    visitor: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{32}$",
        description="The visitor's id, 32 random hex digits the widget keeps in the browser; "
        "omitted: a new one. Conversations belong to one visitor of one widget.",
    )


class TokenResponse(BaseModel):
    token: str = Field(description="Send it as `X-Widget-Token` from the same page.")
    expires_in: int = Field(description="Seconds it stays valid.")
    kb: str = Field(description="The knowledge base the widget answers from.")
    visitor: str = Field(description="The visitor id the token names: keep it for the next.")


class FeedbackRequest(BaseModel):
    answer_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    rating: Literal["up", "down"]
    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)


class FeedbackResponse(BaseModel):
    recorded: bool


@cache
def _script() -> tuple[bytes, bytes]:
    """widget.js, plain and gzipped (read and compressed once per process)."""
    source = (resources.files("api") / "static" / "widget.js").read_bytes()
    return source, gzip.compress(source, compresslevel=9, mtime=0)


@router.get("/widget.js", include_in_schema=False)
async def widget_script(request: Request) -> Response:
    """The widget: one script tag on any page (see the README for its attributes)."""
    plain, packed = _script()
    headers = {"Cache-Control": f"public, max-age={SCRIPT_MAX_AGE_S}", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type="text/javascript", headers=headers)
    return Response(plain, media_type="text/javascript", headers=headers)


@router.post("/v1/widget/token", response_model=TokenResponse)
async def widget_token(
    body: TokenRequest, request: Request, services: ServicesDep, _: TokenExchange
) -> dict[str, Any]:
    """A short-lived token for a widget on the calling page (bound to its Origin)."""
    token, widget, visitor = await services.widgets.mint(
        body.widget_id, request.headers.get("origin"), body.visitor
    )
    await services.limiter.check("widget", "widget", widget.widget_id)
    return {
        "token": token,
        "expires_in": services.widgets.ttl_s,
        "kb": widget.kb,
        "visitor": visitor,
    }


@router.post("/v1/feedback", response_model=FeedbackResponse, status_code=202)
async def feedback(
    body: FeedbackRequest, services: ServicesDep, caller: FeedbackCaller, request: Request
) -> dict[str, Any]:
    """Thumbs up or down (and an optional comment) on an answer given recently."""
    if services.outcomes is None:
        raise CacheUnavailable("feedback is kept in Redis, which is switched off here")
    via = caller.owner if caller.role != "public" else f"ip-{client_ip(request)}"
    await services.outcomes.feedback(
        body.answer_id, body.rating, body.comment.strip(), via, kb=caller.kb
    )
    return {"recorded": True}
