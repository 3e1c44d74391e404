"""A web page's main content as a ``ParsedDocument``: headings with their anchors, then text.

trafilatura finds the article in the page and leaves out navigation, headers, footers,
sidebars, cookie banners and comment sections; it gives the content as XML (``<head rend="h2">``,
``<p>``, ``<list>``, ``<table>``, ``<code>``), from which the blocks are built. It drops the
ids a browser jumps to, so each heading's anchor is looked up in the page itself, by the
heading's text, in page order: the heading's own ``id``, an ``<a id|name>`` inside it, the
``href="#..."`` of a permalink inside it (MkDocs, Sphinx), or the ``id`` of the ``<section>``
it opens. A heading with none is cited by a text fragment instead (``ingest``'s citations).

Runs in a parse worker, under the parse budget, after the same nesting check as HTML files.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from typing import Any

from citewise.errors import DocumentError, EmptyDocument
from ingest.document import Block, ParsedDocument
from ingest.guards import ParseLimits, check_html_depth

_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_PERMALINK = re.compile(r"[\s¶§#🔗]+$")
_CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")  # XHTML: lxml refuses it on decoded text


def decode(body: bytes, content_type: str = "") -> str:
    """The page's text: in the charset its Content-Type names, else the one its ``<meta>``
    names, else UTF-8 (bytes that are not are replaced, not fatal)."""
    match = _CHARSET.search(content_type) or _CHARSET.search(
        body[:4096].decode("ascii", errors="replace")
    )
    if match:
        try:
            return body.decode(match.group(1), errors="replace")
        except LookupError:
            pass
    return body.decode("utf-8-sig", errors="replace")


def _text(body: bytes, content_type: str) -> str:
    return _XML_DECLARATION.sub("", decode(body, content_type), count=1)


def parse_page(
    body: bytes, url: str, limits: ParseLimits, content_type: str = ""
) -> ParsedDocument:
    """The main content of the page fetched from ``url``; ``EmptyDocument`` when none."""
    import trafilatura
    from lxml import etree, html

    text = _text(body, content_type)
    if "\x00" in text[:8192]:
        raise DocumentError("binary content (NUL bytes) in an HTML page")
    check_html_depth(text, limits)
    tree = html.fromstring(text) if text.strip() else None
    if tree is None:
        raise EmptyDocument("an empty page")
    anchors = _anchors(tree)  # before trafilatura, which may prune the tree as it reads it
    extracted = trafilatura.extract(
        tree,
        url=url,
        output_format="xml",
        include_tables=True,
        include_comments=False,
        include_links=False,
        include_images=False,
        include_formatting=False,
        with_metadata=False,
        deduplicate=False,  # its cache lives across pages: one page's text must not hide another's
        favor_recall=True,  # documentation: keep short sections and code rather than lose them
    )
    if not extracted:
        raise EmptyDocument("no main content found on the page")
    content = etree.fromstring(extracted.encode(), etree.XMLParser(resolve_entities=False))
    blocks = []
    for element in content.iter("head", "p", "list", "table", "code", "quote"):
        if _inside_block(element):
            continue
        if element.tag == "head":
            heading = _clean(element.xpath("string()"))
            if not heading:
                continue
            level = _level(element.get("rend"))
            queue = anchors.get(heading.casefold())
            anchor = queue.popleft() if queue else None
            blocks.append(Block(heading, heading_level=level, anchor=anchor))
        elif (body_text := _text_of(element)).strip():
            blocks.append(Block(body_text))
    title = _title(tree)
    first = next((b.text for b in blocks if b.heading_level == 1), None)
    document = ParsedDocument(title=first or title or url, blocks=blocks)
    if not any(b.text.strip() and not b.is_heading for b in blocks):
        raise EmptyDocument("no text to index in the page's main content")
    return document


def _inside_block(element: Any) -> bool:
    """Whether an enclosing element is itself taken as a block (a list inside a table)."""
    parent = element.getparent()
    while parent is not None:
        if parent.tag in ("p", "list", "table", "code", "quote", "head"):
            return True
        parent = parent.getparent()
    return False


def _text_of(element: Any) -> str:
    if element.tag == "list":
        items = [" ".join(i.xpath("string()").split()) for i in element.iter("item")]
        return "\n".join(f"- {item}" for item in items if item)
    if element.tag == "table":
        rows = []
        for row in element.iter("row"):
            cells = [" ".join(c.xpath("string()").split()) for c in row.iter("cell")]
            if any(cells):
                rows.append(" | ".join(cells))
        return "\n".join(rows)
    if element.tag == "code":
        return str(element.xpath("string()")).strip("\n")
    return " ".join(str(element.xpath("string()")).split())


def _level(rend: str | None) -> int:
    if rend and len(rend) == 2 and rend[0] == "h" and rend[1] in "123456":
        return int(rend[1])
    return 2


def _clean(heading: str) -> str:
    return _PERMALINK.sub("", " ".join(heading.split()))


def _anchors(tree: Any) -> dict[str, deque[str]]:
    """Heading text (case-folded) -> the anchors of the headings with that text, in order."""
    found: dict[str, deque[str]] = defaultdict(deque)
    for heading in tree.iter(*_HEADINGS):
        anchor = _anchor_of(heading)
        text = _clean(heading.text_content())
        if anchor and text:
            found[text.casefold()].append(anchor)
    return found


def _anchor_of(heading: Any) -> str | None:
    if heading.get("id"):
        return str(heading.get("id"))
    for link in heading.iter("a"):
        if link.get("id") or link.get("name"):
            return str(link.get("id") or link.get("name"))
        href = link.get("href") or ""
        if href.startswith("#") and len(href) > 1:
            return href[1:]
    parent = heading.getparent()
    if parent is not None and parent.tag in ("section", "div") and parent.get("id"):
        first = next(parent.iter(*_HEADINGS), None)
        if first is heading:
            return str(parent.get("id"))
    return None


def _title(tree: Any) -> str:
    found = tree.find(".//title")
    return " ".join(found.text_content().split()) if found is not None else ""
