"""Shapes shared by the ingest pipeline (writer) and the service (reader)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# Metadata keys every stored chunk carries (plus any extra a loader adds, e.g. ``doc_id``).
SOURCE = "source"  # path relative to the ingested root, with forward slashes
TITLE = "title"
HEADING = "heading"  # heading path, "Billing > Refunds"
ANCHOR = "anchor"  # fragment id of the nearest heading, when the format has one
PAGE = "page"  # 1-based page number, PDFs only
URL = "url"  # the page's address, for documents of a web source (citations link it as is)
START = "start"  # character offsets of the chunk in the document's parsed text
END = "end"
CHUNK_INDEX = "chunk_index"
CHUNK_HASH = "chunk_hash"  # sha256 of the text the embedding was computed from


@dataclass(frozen=True)
class Chunk:
    """A passage of one document, ready to embed and store."""

    id: str
    text: str  # the passage as shown to people and to BM25
    embed_text: str  # the passage with its title and heading path, as the model reads it
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return str(self.metadata[CHUNK_HASH])

    @property
    def source(self) -> str:
        return str(self.metadata[SOURCE])


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_id(source: str, chunk_hash: str, occurrence: int) -> str:
    """Deterministic id: the same passage at the same source always gets the same id."""
    key = f"{source}\x00{chunk_hash}\x00{occurrence}".encode()
    return hashlib.sha256(key).hexdigest()[:32]
