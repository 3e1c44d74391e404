"""Structure-aware, token-sized chunks: a chunk never crosses a document, a heading or a page.

Each section (the body blocks under one heading path, on one page) is split on its own by
LangChain's recursive splitter measuring tiktoken tokens, so every chunk carries exactly one
heading path and one page, and its offsets point into the document's parsed text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from langchain_text_splitters import RecursiveCharacterTextSplitter

from citewise import stored_chunk
from citewise.stored_chunk import Chunk
from ingest.document import BLOCK_SEPARATOR, Block, ParsedDocument

HEADING_JOINER = " > "


@dataclass(frozen=True)
class _Section:
    start: int
    end: int
    headings: tuple[Block, ...]
    page: int | None


class Chunker:
    """Cuts parsed documents into chunks of at most ``chunk_tokens`` tiktoken tokens."""

    def __init__(self, chunk_tokens: int, chunk_overlap: int, encoding: str) -> None:
        self.chunk_tokens = chunk_tokens
        self._splitter = RecursiveCharacterTextSplitter.from_tiktoken_encoder(
            encoding_name=encoding,
            chunk_size=chunk_tokens,
            chunk_overlap=chunk_overlap,
            separators=["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""],
            keep_separator="end",
        )

    def chunk(
        self, document: ParsedDocument, source: str, extra: dict[str, Any] | None = None
    ) -> list[Chunk]:
        """All chunks of one document, in reading order, with ids and metadata."""
        text = document.text()
        chunks: list[Chunk] = []
        occurrences: dict[str, int] = {}
        for section in _sections(document):
            body = text[section.start : section.end]
            cursor = 0
            for piece in self._splitter.split_text(body):
                offset = body.find(piece, cursor)
                if offset < 0:  # the splitter only trims; a miss would be a splitter bug
                    offset = body.find(piece)
                cursor = offset + 1
                start = section.start + offset
                heading = HEADING_JOINER.join(h.text for h in section.headings)
                embed_text = _embed_text(document.title, heading, piece)
                chunk_hash = stored_chunk.content_hash(embed_text)
                occurrence = occurrences.get(chunk_hash, 0)
                occurrences[chunk_hash] = occurrence + 1
                metadata: dict[str, Any] = {
                    stored_chunk.SOURCE: source,
                    stored_chunk.TITLE: document.title,
                    stored_chunk.HEADING: heading,
                    stored_chunk.START: start,
                    stored_chunk.END: start + len(piece),
                    stored_chunk.CHUNK_INDEX: len(chunks),
                    stored_chunk.CHUNK_HASH: chunk_hash,
                    **(extra or {}),
                }
                anchor = next((h.anchor for h in reversed(section.headings) if h.anchor), None)
                if anchor:
                    metadata[stored_chunk.ANCHOR] = anchor
                if section.page is not None:
                    metadata[stored_chunk.PAGE] = section.page
                chunk_id = stored_chunk.chunk_id(source, chunk_hash, occurrence)
                chunks.append(Chunk(chunk_id, piece, embed_text, metadata))
        return chunks


def _embed_text(title: str, heading: str, passage: str) -> str:
    """What the model reads: where the passage sits, then the passage."""
    context = (
        heading
        if heading.startswith(title)
        else HEADING_JOINER.join(part for part in (title, heading) if part)
    )
    return f"{context}\n{passage}" if context else passage


def _sections(document: ParsedDocument) -> Iterator[_Section]:
    headings: list[Block] = []
    run: list[tuple[int, int]] = []
    run_page: int | None = None
    position = 0

    def close() -> _Section | None:
        if not run:
            return None
        section = _Section(run[0][0], run[-1][1], tuple(headings), run_page)
        run.clear()
        return section

    for block in document.blocks:
        start, end = position, position + len(block.text)
        position = end + len(BLOCK_SEPARATOR)
        if block.is_heading:
            if (section := close()) is not None:
                yield section
            while headings and headings[-1].heading_level >= block.heading_level:
                headings.pop()
            headings.append(block)
            continue
        if run and block.page != run_page and (section := close()) is not None:
            yield section
        if not block.text.strip():
            continue
        run_page = block.page
        run.append((start, end))
    if (section := close()) is not None:
        yield section
