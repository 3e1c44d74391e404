"""File suffix -> parser. Each parser turns bytes on disk into a ``ParsedDocument``.

unstructured parses Markdown, HTML and Word. Two formats take another proven offline path:
PDF uses pypdf page by page (unstructured's PDF support needs torch and OCR models), and
plain text uses a small parser of our own because unstructured's text heuristics label short
sentences as titles, which would corrupt every heading path.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from citewise.errors import DocumentError, EmptyDocument
from ingest.document import Block, ParsedDocument, slugify, split_explicit_anchor
from ingest.guards import (
    ParseLimits,
    check_archive,
    check_html_depth,
    check_markdown,
    check_pdf_content,
)

# (the file's bytes, its name, limits): parsers never open anything by name (ingest.opening).
Parser = Callable[[bytes, str, ParseLimits], ParsedDocument]


def parse(path: Path, limits: ParseLimits | None = None) -> ParsedDocument:
    """Parse a file that is trusted to be what its path names (tests, benchmarks)."""
    return parse_bytes(path.read_bytes(), path.name, limits)


def parse_bytes(data: bytes, name: str, limits: ParseLimits | None = None) -> ParsedDocument:
    """Parse one file's bytes, raising ``DocumentError`` with a one-line reason when it cannot;
    ``name`` gives the format (its suffix) and a title when the document has none."""
    suffix = PurePosixPath(name).suffix
    parser = PARSERS.get(suffix.lower())
    if parser is None:
        raise DocumentError(f"unsupported file type {suffix!r}")
    try:
        document = parser(data, name, limits or ParseLimits())
    except DocumentError:
        raise
    except Exception as exc:  # parsers raise anything; the ingest must go on
        raise DocumentError(_one_line(exc)) from exc
    if not any(b.text.strip() and not b.is_heading for b in document.blocks):
        raise EmptyDocument("no text to index (only headings, images or markup)")
    return document


def _one_line(exc: Exception) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}"[:300] if message else type(exc).__name__


def read_text(data: bytes) -> str:
    """A text file's bytes as UTF-8, refusing binary content disguised by its name."""
    if b"\x00" in data[:8192]:
        raise DocumentError("binary content (NUL bytes) in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not valid UTF-8 (byte {exc.start})") from exc


def _title_from_name(name: str) -> str:
    return re.sub(r"[-_]+", " ", PurePosixPath(name).stem).strip().capitalize()


# --- unstructured: Markdown, HTML, Word ---------------------------------------------------


def _from_elements(
    elements: Iterable[Any], fallback_title: str, anchors: dict[str, str] | None
) -> ParsedDocument:
    """Blocks from unstructured elements; ``anchors=None`` for formats with no fragment ids."""
    blocks: list[Block] = []
    list_items: list[str] = []

    def flush_list() -> None:
        if list_items:
            blocks.append(Block("\n".join(list_items)))
            list_items.clear()

    for element in elements:
        kind = type(element).__name__
        text = (element.text or "").strip()
        if not text:
            continue
        if kind == "Title" and element.metadata.category_depth is not None:
            flush_list()
            heading, explicit = split_explicit_anchor(text)
            level = min(int(element.metadata.category_depth) + 1, 6)
            anchor = (
                None if anchors is None else (explicit or anchors.get(heading) or slugify(heading))
            )
            blocks.append(Block(heading, heading_level=level, anchor=anchor))
        elif kind == "ListItem":
            depth = int(element.metadata.category_depth or 1)
            marker = "" if _BULLET.match(text) else "- "
            list_items.append("  " * max(depth - 1, 0) + marker + text)
        elif kind == "Table" and element.metadata.text_as_html:
            flush_list()
            blocks.append(Block(_table_rows(element.metadata.text_as_html)))
        else:
            flush_list()
            blocks.append(Block(text))
    flush_list()
    title = next((b.text for b in blocks if b.heading_level == 1), fallback_title)
    return ParsedDocument(title=title, blocks=blocks)


def _table_rows(html: str) -> str:
    """Render an HTML table as one line per row, cells joined by ' | '."""
    from bs4 import BeautifulSoup

    rows = BeautifulSoup(html, "lxml").find_all("tr")
    lines = [
        " | ".join(c.get_text(" ", strip=True) for c in r.find_all(["th", "td"])) for r in rows
    ]
    return "\n".join(line for line in lines if line.strip(" |"))


def parse_markdown(data: bytes, name: str, limits: ParseLimits) -> ParsedDocument:
    from unstructured.partition.md import partition_md

    text = read_text(data)
    check_markdown(text, limits)
    return _from_elements(partition_md(text=text), _title_from_name(name), {})


def parse_html(data: bytes, name: str, limits: ParseLimits) -> ParsedDocument:
    from bs4 import BeautifulSoup
    from unstructured.partition.html import partition_html

    text = read_text(data)
    check_html_depth(text, limits)
    soup = BeautifulSoup(text, "lxml")
    anchors = {
        h.get_text(" ", strip=True): str(h["id"])
        for h in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"])
        if h.get("id")
    }
    document = _from_elements(partition_html(text=text), _title_from_name(name), anchors)
    page_title = soup.title.get_text(strip=True) if soup.title else ""
    if page_title and not any(b.heading_level == 1 for b in document.blocks):
        document.title = page_title
    return document


def parse_docx(data: bytes, name: str, limits: ParseLimits) -> ParsedDocument:
    from unstructured.partition.docx import partition_docx

    check_archive(io.BytesIO(data), limits)
    # Word headings have no fragment ids a browser could jump to.
    return _from_elements(partition_docx(file=io.BytesIO(data)), _title_from_name(name), None)


# --- plain text -----------------------------------------------------------------------------

_UNDERLINE = re.compile(r"^(=+|-+)\s*$")
_BULLET = re.compile(r"^\s*([-*•]|\d+[.)])\s+")


def parse_text(data: bytes, name: str, limits: ParseLimits) -> ParsedDocument:
    """Paragraphs split on blank lines; headings are underlined lines or short UPPERCASE lines."""
    text = read_text(data)
    blocks: list[Block] = []
    for paragraph in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [line.rstrip() for line in paragraph.strip("\n").splitlines() if line.strip()]
        if not lines:
            continue
        if len(lines) >= 2 and _UNDERLINE.match(lines[1]):
            level = 1 if lines[1].lstrip().startswith("=") else 2
            blocks.append(Block(lines[0].strip(), heading_level=level))
            lines = lines[2:]
        elif _looks_like_caps_heading(lines[0]):
            blocks.append(Block(lines[0].strip(), heading_level=2))
            lines = lines[1:]
        if lines:
            blocks.append(Block("\n".join(line.strip() for line in lines)))
    title = next((b.text for b in blocks if b.heading_level == 1), _title_from_name(name))
    return ParsedDocument(title=title, blocks=blocks)


def _looks_like_caps_heading(line: str) -> bool:
    stripped = line.strip()
    letters = [c for c in stripped if c.isalpha()]
    return (
        len(stripped) <= 80
        and len(letters) >= 3
        and all(c.isupper() for c in letters)
        and not _BULLET.match(stripped)
        and not stripped.endswith((".", ",", ";"))
    )


# --- PDF ------------------------------------------------------------------------------------


def parse_pdf(data: bytes, name: str, limits: ParseLimits) -> ParsedDocument:
    """Text page by page with pypdf; lines set in a larger font than the body become headings.

    pypdf bounds what one compressed stream may inflate to by itself (``pypdf.filters``); what
    all the pages' contents add up to is checked first (``check_pdf_content``).
    """
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        raise DocumentError("encrypted PDF")
    check_pdf_content(reader, len(data), limits)
    pages = _without_running_lines([_pdf_lines(page) for page in reader.pages])
    sizes: dict[float, int] = {}
    for lines in pages:
        for text, size in lines:
            sizes[size] = sizes.get(size, 0) + len(text)
    if not sizes:
        raise EmptyDocument("no text to index (a scanned PDF?)")
    body = max(sizes, key=lambda s: sizes[s])
    heading_sizes = sorted((s for s in sizes if s >= body * 1.15), reverse=True)
    is_heading_text = re.compile(r"[^\W\d_].*[^\W\d_]").search
    level_of = {size: min(i + 1, 6) for i, size in enumerate(heading_sizes)}

    blocks: list[Block] = []
    for page_number, lines in enumerate(pages, start=1):
        body_lines: list[str] = []
        for text, size in lines:
            if size in level_of and is_heading_text(text):
                if body_lines:
                    blocks.append(Block("\n".join(body_lines), page=page_number))
                    body_lines = []
                heading = text.strip()
                blocks.append(Block(heading, heading_level=level_of[size], page=page_number))
            else:
                body_lines.append(text.strip())
        if body_lines:
            blocks.append(Block("\n".join(body_lines), page=page_number))
    metadata_title = (reader.metadata.title if reader.metadata else None) or ""
    first_heading = next((b.text for b in blocks if b.is_heading), "")
    title = first_heading or metadata_title.strip() or _title_from_name(name)
    return ParsedDocument(title=title, blocks=_merge_heading_runs(blocks))


_PAGE_FURNITURE_SHARE = 0.5
_BULLET_GLYPH = re.compile(r"^([\-–—•·▪◦*]|\d{1,3}[.)])$")


def _without_running_lines(pages: list[list[tuple[str, float]]]) -> list[list[tuple[str, float]]]:
    """Drop running headers and footers: lines repeated (numbers aside) on most pages."""
    if len(pages) < 2:
        return pages

    def shape(line: str) -> str:
        return re.sub(r"\d+", "#", line.strip().lower())

    seen: dict[str, int] = {}
    for lines in pages:
        for key in {shape(text) for text, _ in lines}:
            seen[key] = seen.get(key, 0) + 1
    threshold = max(2, int(len(pages) * _PAGE_FURNITURE_SHARE + 0.999))
    return [[(t, s) for t, s in lines if seen[shape(t)] < threshold] for lines in pages]


def _pdf_lines(page: Any) -> list[tuple[str, float]]:
    """(line text, largest font size on the line) for one page."""
    lines: list[tuple[str, float]] = []
    current: list[str] = []
    current_size = 0.0

    def visit(text: str, cm: Any, tm: Any, font_dict: Any, font_size: float) -> None:
        nonlocal current, current_size
        scale = abs(float(tm[3])) if tm else 1.0
        size = round(float(font_size) * (scale or 1.0), 1)
        parts = text.split("\n")
        for i, part in enumerate(parts):
            if part.strip():
                current.append(part)
                current_size = max(current_size, size)
            if i < len(parts) - 1:
                line = "".join(current).strip()
                if line:
                    lines.append((line, current_size))
                current, current_size = [], 0.0

    page.extract_text(visitor_text=visit)
    tail = "".join(current).strip()
    if tail:
        lines.append((tail, current_size))
    return _join_bullet_glyphs(lines)


def _join_bullet_glyphs(lines: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """A list bullet drawn on its own ("–", "•") belongs to the line after it."""
    joined: list[tuple[str, float]] = []
    marker = ""
    for text, size in lines:
        if _BULLET_GLYPH.match(text):
            marker = text if text[0].isdigit() else "-"
            continue
        joined.append((f"{marker} {text}" if marker else text, size))
        marker = ""
    return joined


def _merge_heading_runs(blocks: list[Block]) -> list[Block]:
    """Join a heading wrapped over two lines back into one heading."""
    merged: list[Block] = []
    for block in blocks:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and block.is_heading
            and previous.heading_level == block.heading_level
            and previous.page == block.page
        ):
            merged[-1] = Block(f"{previous.text} {block.text}", block.heading_level, block.page)
        else:
            merged.append(block)
    return merged


PARSERS: dict[str, Parser] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
}
