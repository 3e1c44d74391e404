"""What a parser produces: a titled sequence of headings and text blocks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Block:
    """One heading or one run of body text, in reading order."""

    text: str
    heading_level: int = 0  # 0 for body text, 1..6 for headings
    page: int | None = None  # 1-based, PDFs only
    anchor: str | None = None  # fragment id a browser can jump to, headings only

    @property
    def is_heading(self) -> bool:
        return self.heading_level > 0


@dataclass
class ParsedDocument:
    """A document as text: its title and its blocks."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def text(self) -> str:
        """The parsed text; chunk offsets index into this string."""
        return BLOCK_SEPARATOR.join(b.text for b in self.blocks)


BLOCK_SEPARATOR = "\n\n"

_MARKDOWN_ATTR_ID = re.compile(r"\s*\{\s*#([\w-]+)\s*\}\s*$")
_NOT_SLUG = re.compile(r"[^\w\- ]+")


def split_explicit_anchor(heading: str) -> tuple[str, str | None]:
    """Split ``Title { #some-id }`` (attribute-list syntax) into text and id."""
    match = _MARKDOWN_ATTR_ID.search(heading)
    if not match:
        return heading.strip(), None
    return heading[: match.start()].strip(), match.group(1)


def slugify(heading: str) -> str:
    """The anchor GitHub-style renderers give a Markdown heading."""
    return _NOT_SLUG.sub("", heading.strip().lower()).replace(" ", "-")
