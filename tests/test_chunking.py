"""Structure-aware token chunking."""

from __future__ import annotations

import tiktoken

from citewise import stored_chunk
from ingest.chunking import Chunker
from ingest.document import Block, ParsedDocument


def _document() -> ParsedDocument:
    long_body = " ".join(
        f"Sentence number {i} talks about refunds and invoices." for i in range(80)
    )
    return ParsedDocument(
        title="Billing",
        blocks=[
            Block("Billing", heading_level=1, anchor="billing"),
            Block("Short intro."),
            Block("Refunds", heading_level=2, anchor="refunds"),
            Block(long_body),
            Block("Annual plans", heading_level=3),
            Block("Annual plans get a full refund within 30 days.", page=2),
        ],
    )


def test_chunks_respect_size_headings_and_offsets() -> None:
    chunker = Chunker(chunk_tokens=60, chunk_overlap=10, encoding="cl100k_base")
    document = _document()
    chunks = chunker.chunk(document, "billing.md")
    text = document.text()
    encoding = tiktoken.get_encoding("cl100k_base")

    assert all(len(encoding.encode(c.text)) <= 60 for c in chunks)
    assert all(
        text[c.metadata[stored_chunk.START] : c.metadata[stored_chunk.END]] == c.text
        for c in chunks
    )
    headings = [c.metadata[stored_chunk.HEADING] for c in chunks]
    assert headings[0] == "Billing"
    assert headings.count("Billing > Refunds") > 2  # the long section was split
    assert headings[-1] == "Billing > Refunds > Annual plans"
    assert (
        chunks[-1].metadata[stored_chunk.PAGE] == 2 and stored_chunk.PAGE not in chunks[0].metadata
    )
    assert chunks[-1].metadata[stored_chunk.ANCHOR] == "refunds"  # nearest heading with an anchor
    assert chunks[-1].embed_text.startswith("Billing > Refunds > Annual plans\n")
    assert [c.metadata[stored_chunk.CHUNK_INDEX] for c in chunks] == list(range(len(chunks)))


def test_ids_are_deterministic_and_distinct_for_repeated_passages() -> None:
    chunker = Chunker(chunk_tokens=60, chunk_overlap=0, encoding="cl100k_base")
    document = ParsedDocument(
        title="FAQ",
        blocks=[Block("Same answer."), Block("Q", heading_level=1), Block("Same answer.")],
    )
    first = chunker.chunk(document, "faq.md")
    second = chunker.chunk(document, "faq.md")
    elsewhere = chunker.chunk(document, "other/faq.md")

    assert [c.id for c in first] == [c.id for c in second]
    assert len({c.id for c in first}) == len(first)
    assert not {c.id for c in first} & {c.id for c in elsewhere}
