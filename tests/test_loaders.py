"""Each parser on the real sample documents: text, headings, pages, anchors."""

from __future__ import annotations

from pathlib import Path

import pytest

from citewise.errors import DocumentError
from ingest.document import slugify, split_explicit_anchor
from ingest.loaders import parse
from tests.conftest import SAMPLE


def _heading_texts(path: Path) -> list[str]:
    return [b.text for b in parse(path).blocks if b.is_heading]


def test_pdf_keeps_pages_and_headings_and_drops_running_footers() -> None:
    document = parse(SAMPLE / "billing" / "refund-policy.pdf")

    pages = {b.page for b in document.blocks}
    assert pages == {1, 2}
    assert document.title == "Tallybird Billing and Refund Policy"
    assert "Annual plans" in _heading_texts(SAMPLE / "billing" / "refund-policy.pdf")
    assert "Page 1" not in document.text() and "Help Centre –" not in document.text()
    disputes = [b for b in document.blocks if "45 days" in b.text]
    assert disputes and all(b.page == 2 for b in disputes)
    assert all(any(c.isalpha() for c in b.text) for b in document.blocks if b.is_heading)


def test_html_headings_carry_their_id_attributes() -> None:
    document = parse(SAMPLE / "billing" / "plans-and-pricing.html")
    anchors = {b.text: b.anchor for b in document.blocks if b.is_heading}
    assert anchors["Plan comparison"] == "plan-comparison"
    assert any(" | " in b.text and "Team" in b.text for b in document.blocks)  # table rows


def test_markdown_headings_nest_and_get_slug_anchors() -> None:
    document = parse(SAMPLE / "integrations" / "bank-sync.md")
    levels = [b.heading_level for b in document.blocks if b.is_heading]
    assert levels[0] == 1 and max(levels) >= 3
    assert all(b.anchor == slugify(b.text) for b in document.blocks if b.is_heading)


def test_docx_headings_lists_and_tables() -> None:
    document = parse(SAMPLE / "account" / "admin-handbook.docx")
    text = document.text()
    assert "Roles" in _heading_texts(SAMPLE / "account" / "admin-handbook.docx")
    assert "Permission | Owner | Administrator" in text
    assert "1. Go to Settings > Users" in text
    assert all(b.anchor is None for b in document.blocks)


def test_plain_text_headings_are_uppercase_or_underlined_lines(tmp_path: Path) -> None:
    path = tmp_path / "guide.txt"
    path.write_text(
        "Setting up\n==========\n\nA first paragraph. It has two sentences.\n\n"
        "BEFORE YOU START\n\nShort sentence here.\n\nDetails\n-------\n- one\n- two\n",
        encoding="utf-8",
    )
    document = parse(path)
    assert [(b.text, b.heading_level) for b in document.blocks if b.is_heading] == [
        ("Setting up", 1),
        ("BEFORE YOU START", 2),
        ("Details", 2),
    ]
    assert document.title == "Setting up"
    assert "Short sentence here." in [b.text for b in document.blocks if not b.is_heading]


def test_explicit_markdown_anchor_syntax_is_split_off() -> None:
    assert split_explicit_anchor("First Steps { #first-steps }") == ("First Steps", "first-steps")
    assert split_explicit_anchor("Plain heading") == ("Plain heading", None)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("a.md", b"\x00\x01\x02binary", "binary"),
        ("b.txt", "na\xefve".encode("latin-1"), "UTF-8"),
        ("c.pdf", b"%PDF-1.4 nonsense", ""),
        ("d.docx", b"PK\x03\x04 broken zip", ""),
        ("e.html", b"<html><body>   </body></html>", "no text"),
    ],
)
def test_unreadable_files_raise_a_one_line_document_error(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentError) as caught:
        parse(path)
    message = str(caught.value)
    assert message and "\n" not in message and reason in message


def test_offline_vocabulary_matches_tiktoken_and_is_idempotent(cache_dir: Path) -> None:
    import tiktoken

    from citewise.offline import prepare_offline

    files = sorted((cache_dir / "tiktoken").iterdir())
    prepare_offline(cache_dir)
    assert sorted((cache_dir / "tiktoken").iterdir()) == files and len(files) == 2
    assert tiktoken.get_encoding("cl100k_base").decode([9906, 1917]) == "Hello world"
