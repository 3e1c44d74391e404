"""Request and response bodies of the HTTP API (they are the OpenAPI docs at /docs).

What answers are made of (hits, sources, citations, the answer) is defined once, with the core,
in ``citewise.shapes``; the bodies here are requests and the envelopes around those.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from citewise.shapes import Hit

FilterValue = str | int | float | bool


class SearchRequest(BaseModel):
    query: str = Field(description="What to look for.", examples=["How do refunds work?"])
    kb: str | None = Field(default=None, description="Knowledge base; default `default`.")
    k: int = Field(default=5, ge=1, le=100, description="How many hits.")
    mode: Literal["dense", "bm25", "hybrid"] | None = Field(
        default=None, description="Retrieval mode; default from CITEWISE_RETRIEVAL_MODE."
    )
    filters: dict[str, FilterValue] | None = Field(
        default=None,
        description="Exact metadata matches (`title`, `heading`, `page`, any ingested key) "
        "and `source_prefix` for a folder.",
        examples=[{"source_prefix": "billing/"}],
    )


class SearchResponse(BaseModel):
    hits: list[Hit]


class Message(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=20_000)


class AskRequest(BaseModel):
    question: str = Field(examples=["How long do I have to ask for a refund?"])
    kb: str | None = Field(default=None, description="Knowledge base; default `default`.")
    history: list[Message] = Field(
        default_factory=list, max_length=100, description="Earlier turns, oldest first."
    )
    k: int | None = Field(default=None, ge=1, le=20, description="Passages to answer from.")
    filters: dict[str, FilterValue] | None = None
    conversation_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{32}$",
        description="Continue a conversation the server keeps: the `conversation_id` an "
        "earlier answer returned. Explicit `history` wins when both are given.",
    )


class FlushRequest(BaseModel):
    kb: str | None = Field(default=None, description="Knowledge base; omit for all of them.")


class FlushResponse(BaseModel):
    flushed: Literal["answers"]
    kb: str | None


class ServiceInfo(BaseModel):
    """``GET /``: what the service is and where to go next."""

    name: str = Field(examples=["Citewise"])
    version: str = Field(examples=["0.1.0"])
    summary: str
    links: dict[str, str] = Field(
        description="Paths of the API reference (`docs`, `redoc`, `openapi`) and the health "
        "checks (`healthz`, `readyz`).",
        examples=[{"docs": "/docs", "openapi": "/openapi.json", "healthz": "/healthz"}],
    )
