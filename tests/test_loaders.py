"""Each parser on the real sample documents: text, headings, pages, anchors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from citewise.errors import DocumentError
from citewise.settings import Settings
from ingest.document import slugify, split_explicit_anchor
from ingest.guards import PARSER_MAX_DEPTH, ParseLimits
from ingest.loaders import parse
from tests.conftest import SAMPLE
from tests.hostile_files import (
    docx_bomb,
    nested_html,
    nested_list_markdown,
    pdf_shared_content,
)

HANDBOOK = SAMPLE / "account" / "admin-handbook.docx"


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


# --- hostile files: refused before the parser sees them ---------------------------------------


def refusal(path: Path, limits: ParseLimits | None = None) -> str:
    with pytest.raises(DocumentError) as caught:
        parse(path, limits)
    return str(caught.value)


def test_parse_limits_default_to_the_settings_defaults(tmp_path: Path) -> None:
    assert ParseLimits.from_settings(Settings(home=tmp_path).limits) == ParseLimits()


def test_a_docx_bomb_is_refused_from_its_directory(tmp_path: Path) -> None:
    small = tmp_path / "small-bomb.docx"
    docx_bomb(small, HANDBOOK, inflated_mib=2)  # 2 MiB of paragraphs in ~7 KiB
    with zipfile.ZipFile(small) as archive:  # a sound archive: every part inflates, CRCs match
        assert archive.testzip() is None
        assert archive.read("word/document.xml").endswith(b"</w:body></w:document>")
    assert "zip bomb" in refusal(small) and "CITEWISE_MAX_COMPRESSION_RATIO" in refusal(small)
    assert "CITEWISE_MAX_UNCOMPRESSED_MB" in refusal(small, ParseLimits(max_uncompressed_bytes=1))


def test_small_parts_may_compress_well(tmp_path: Path) -> None:
    # The sample's own parts are under 1 MiB; a tight ratio limit does not refuse them.
    assert parse(HANDBOOK, ParseLimits(max_compression_ratio=2)).blocks


def test_a_pdf_whose_pages_share_a_large_content_stream_is_refused(tmp_path: Path) -> None:
    # Two pages drawing one 2 MB stream, in 7 KB: 15 s in pypdf, as each use is parsed anew.
    shared = tmp_path / "shared.pdf"
    pdf_shared_content(shared, pages=2, content_bytes=2_000_000)
    assert shared.stat().st_size < 10_000
    assert "a PDF bomb?" in refusal(shared) and "CITEWISE_MAX_COMPRESSION_RATIO" in refusal(shared)
    many = tmp_path / "many.pdf"
    pdf_shared_content(many, pages=60, content_bytes=2_000_000)  # every use counts
    assert "CITEWISE_MAX_UNCOMPRESSED_MB" in refusal(many)
    # A page's own content, however well it compresses, is fine under 1 MB in all.
    small = tmp_path / "small.pdf"
    pdf_shared_content(small, pages=1, content_bytes=100_000)
    assert "All work and no play" in parse(small).text()


@pytest.mark.parametrize("suffix", [".html", ".md"])
def test_html_as_deep_as_the_parser_reads_is_kept_one_deeper_is_refused(
    tmp_path: Path, suffix: str
) -> None:
    # <html> and <body> count: at the limit the deepest text is still parsed; one level more
    # and libxml2 would drop it without a word, so it is refused instead.
    at_limit = tmp_path / f"at-limit{suffix}"
    at_limit.write_text(nested_html(PARSER_MAX_DEPTH - 2) + "\n\nAfter.\n", encoding="utf-8")
    assert "Deep." in parse(at_limit).text()

    deeper = tmp_path / f"deeper{suffix}"
    deeper.write_text(nested_html(PARSER_MAX_DEPTH - 1), encoding="utf-8")
    assert "nested more than 256 levels deep" in refusal(deeper)
    assert "nested more than 20 levels" in refusal(at_limit, ParseLimits(max_nesting_depth=20))


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (nested_list_markdown(2_000), True),
        (">" * 300 + " quoted\n", True),
        ("> " * 100 + "quoted\n\nParagraph.\n", False),
        (nested_list_markdown(60) + "\nParagraph.\n", False),
        ("Text.\n\n```\n" + " " * 400 + "indented code is text\n```\n", False),
        ("Text.\n" + " " * 400 + "\n\nTrailing blanks nest nothing.\n", False),
        # Python-Markdown's fences start in column 0 and need a closing fence of the same run:
        # otherwise they are text and the lines after them are parsed, so they are measured.
        ("   ```\n" + nested_list_markdown(1_500), True),
        ("```\n" + nested_list_markdown(1_500), True),
        ("~~~\n" + nested_list_markdown(1_500) + "~~~~\n", True),
        ("```python\n" + nested_list_markdown(300) + "```\n\nAfter.\n", False),
        ("~~~~ {.yaml}\n" + nested_list_markdown(300) + "~~~~\n\nAfter.\n", False),
    ],
)
def test_markdown_nesting(tmp_path: Path, text: str, refused: bool) -> None:
    path = tmp_path / "nested.md"
    path.write_text(text, encoding="utf-8")
    if refused:
        assert "lists or quotes nested more than 256 levels deep" in refusal(path)
    else:
        assert parse(path).blocks


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("![" * 6_000, True),  # 12 KB: the parser took 40 s over it
        ("[" * 100 + "word " * 20_000, True),  # a few unclosed before a long paragraph
        ("[" * 2_000 + "]" * 2_000, True),  # closed, but each scans to its partner
        (("Unclosed [ here.\n\n" * 200), False),  # a paragraph ends the scan
        ("\\[" * 1_000, False),  # escaped brackets are text
        ("```\n" + "![" * 6_000 + "\n```\n\nAfter.\n", False),  # code is not scanned
        ("See [the guide](https://example.com/guide) and [more][ref].\n" * 500, False),
    ],
)
def test_markdown_brackets_that_would_cost_quadratic_time_are_refused(
    tmp_path: Path, text: str, refused: bool
) -> None:
    path = tmp_path / "brackets.md"
    path.write_text(text, encoding="utf-8")
    if refused:
        assert "unclosed or deeply nested [ brackets" in refusal(path)
    else:
        assert parse(path).blocks


def test_offline_vocabulary_matches_tiktoken_and_is_idempotent(cache_dir: Path) -> None:
    import tiktoken

    from citewise.offline import prepare_offline

    files = sorted((cache_dir / "tiktoken").iterdir())
    prepare_offline(cache_dir)
    assert sorted((cache_dir / "tiktoken").iterdir()) == files and len(files) == 2
    assert tiktoken.get_encoding("cl100k_base").decode([9906, 1917]) == "Hello world"
