"""The wire types, defined once."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

# The core builds these; the HTTP API sends them (and documents them: api/schemas.py uses these
# classes), the CLI prints them with --json, the OpenAI-compatible face re-frames them. JSON is
# ``json.dumps(model.model_dump(mode="json"))``: field order here is key order on the wire.


class Hit(BaseModel):
    """A passage found by a search."""

    # /v1/search's hits, citewise search --json's rows
    rank: int
    chunk_id: str
    source: str
    title: str
    heading: str
    page: int | None
    url: str = Field(description="Deep link: PDF page, heading anchor or text fragment.")
    score: float = Field(description="What ranked it: fused, cosine or BM25 score by mode.")
    similarity: float = Field(description="Cosine similarity to the query.")
    text: str
    metadata: dict[str, Any]


class Source(BaseModel):
    """A passage an answer may cite as [n]."""

    # the sources event, /v1/ask's sources
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
    retrieved: bool = Field(
        default=True,
        description="False for a passage the answerer read because it stands next to a "
        "retrieved one in the same document.",
    )


class Citation(BaseModel):
    """A passage the answer cites, checked against the sentences citing it."""

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


class Answer(BaseModel):
    """A whole answer, with the passages it cites."""

    # The /v1/ask body. ``cached`` and ``conversation_id`` come last: the answer cache stores
    # the body without them and appends them to the stored bytes.
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


# The answer event stream, in order: sources, delta..., citations, done (or error instead of the
# rest). ``name`` is the server-sent event's name; the JSON of the model is its data.


class SourcesEvent(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: ClassVar[str] = "sources"

    sources: list[Source]
    # Known from the start, so every frame of a stream can carry it; not part of the data.
    answer_id: str = Field(default="", exclude=True)


class DeltaEvent(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: ClassVar[str] = "delta"

    text: str


class CitationsEvent(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: ClassVar[str] = "citations"

    citations: list[Citation]


class DoneEvent(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: ClassVar[str] = "done"

    answer_id: str
    refused: bool
    cached: bool
    conversation_id: str | None = None
    answer: str  # the final text: the deltas joined, invalid markers removed, trimmed


class ErrorEvent(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: ClassVar[str] = "error"

    code: str
    message: str


Event = SourcesEvent | DeltaEvent | CitationsEvent | DoneEvent
