"""Request and response bodies of the HTTP API (they are the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

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


class Hit(BaseModel):
    rank: int
    chunk_id: str
    source: str
    title: str
    heading: str
    page: int | None
    score: float = Field(description="What ranked it: fused, cosine or BM25 score by mode.")
    similarity: float = Field(description="Cosine similarity to the query.")
    text: str
    metadata: dict[str, Any]


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


class Citation(BaseModel):
    n: int
    chunk_id: str
    source: str
    title: str
    heading: str
    page: int | None
    quote: str = Field(description="The supporting span of the passage.")
    start: int = Field(description="Offset of `quote` in the passage text.")
    end: int
    url: str = Field(description="Deep link: PDF page, heading anchor or text fragment.")
    supported: bool = Field(description="False if a sentence citing it is not backed by it.")
    unsupported_claims: list[str]


class Source(BaseModel):
    n: int
    chunk_id: str
    source: str
    title: str
    heading: str
    page: int | None
    url: str
    score: float
    similarity: float
    text: str


class AskResponse(BaseModel):
    answer_id: str
    answer: str = Field(description="The answer with [n] markers pointing at `citations`.")
    citations: list[Citation]
    sources: list[Source]
    refused: bool = Field(description="True when the documents do not hold the answer.")
    cached: bool = Field(description="True when the answer came from the answer cache.")
    conversation_id: str | None = Field(
        description="Send it with the next question to continue the conversation (null when "
        "the server keeps no conversations)."
    )


class FlushRequest(BaseModel):
    kb: str | None = Field(default=None, description="Knowledge base; omit for all of them.")


class FlushResponse(BaseModel):
    flushed: Literal["answers"]
    kb: str | None
