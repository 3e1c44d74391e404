"""Checks that refuse a hostile file before a parser sees it.

Parsers trust their input: python-docx inflates a whole XML part into memory, libxml2 (under
unstructured's HTML and Markdown support) silently drops everything nested deeper than 256
elements, and Python-Markdown recurses once per level of list or quote, so a few thousand
levels take minutes and end in ``RecursionError``. Each check here is cheap and linear in the
file: it reads a zip's central directory, or streams markup once without building a tree.
"""

from __future__ import annotations

import bisect
import re
import zipfile
from dataclasses import dataclass
from typing import IO, Any

from citewise.errors import DocumentError
from citewise.settings import LimitSettings

# libxml2's HTML parser reads at most this many nested elements (<html> counts) and drops the
# rest without an error; nothing deeper can be parsed, whatever the setting says.
PARSER_MAX_DEPTH = 256
# Small parts may compress extremely well (an empty styles table, a run of spaces) and are
# harmless; the ratio only matters once a part inflates to real memory.
RATIO_CHECKED_ABOVE = 1 << 20
_MB = 1 << 20


@dataclass(frozen=True)
class ParseLimits:
    """Limits on what a file may expand into; defaults match the settings' defaults."""

    max_uncompressed_bytes: int = 100 * _MB
    max_compression_ratio: float = 100.0
    max_nesting_depth: int = PARSER_MAX_DEPTH
    max_file_bytes: int = 50 * _MB

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> ParseLimits:
        return cls(
            max_uncompressed_bytes=int(settings.max_uncompressed_mb * _MB),
            max_compression_ratio=settings.max_compression_ratio,
            max_nesting_depth=settings.max_nesting_depth,
            max_file_bytes=int(settings.max_file_mb * _MB),
        )


def check_archive(archive_file: IO[bytes], limits: ParseLimits) -> None:
    """Refuse a zip (a .docx) that would inflate too far, from its central directory alone.

    The sizes there can be trusted as upper bounds: Python's zipfile never inflates a member
    past its declared size (it stops and fails the CRC check instead).
    """
    try:
        with zipfile.ZipFile(archive_file) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DocumentError(f"not a valid Word file (zip): {exc}") from exc
    total = sum(m.file_size for m in members)
    if total > limits.max_uncompressed_bytes:
        raise DocumentError(
            f"unpacks to {total / _MB:,.0f} MB, over the {limits.max_uncompressed_bytes / _MB:g}"
            " MB limit (CITEWISE_MAX_UNCOMPRESSED_MB)"
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_CHECKED_ABOVE and ratio > limits.max_compression_ratio:
            raise DocumentError(
                f"part {member.filename!r} is compressed {ratio:,.0f}:1, over the "
                f"{limits.max_compression_ratio:g}:1 limit (CITEWISE_MAX_COMPRESSION_RATIO); "
                "a zip bomb?"
            )


def check_pdf_content(reader: Any, file_size: int, limits: ParseLimits) -> None:
    """Refuse a PDF whose pages' content streams, decoded, add up to too much.

    pypdf caps what one stream may inflate to, but text is extracted from a page's content
    streams each time a page uses them, at a few hundred KB a second: a stream shared by many
    pages (or listed many times in one page) is decoded and parsed once per use. Two pages of a
    7 KB file sharing one 2 MB stream took 15 s. So each use counts, and the total is held to
    the same limits as a Word file's parts: an absolute size, and a ratio to the file's size
    once past 1 MB. Each distinct stream is decoded once here, without being kept.
    """
    from pypdf.filters import decode_stream_data
    from pypdf.generic import ArrayObject, IndirectObject, StreamObject

    sizes: dict[tuple[int, int], int] = {}

    def decoded_size(item: Any) -> int:
        key = (item.idnum, item.generation) if isinstance(item, IndirectObject) else None
        if key is not None and key in sizes:
            return sizes[key]
        stream = item.get_object()
        size = 0
        if isinstance(stream, StreamObject):
            try:
                size = len(decode_stream_data(stream))
            except Exception:  # undecodable: the extraction skips it as well
                size = 0
        if key is not None:
            sizes[key] = size
        return size

    total = 0
    for page in reader.pages:
        contents = page.raw_get("/Contents") if "/Contents" in page else None
        resolved = contents.get_object() if contents is not None else None
        uses = list(resolved) if isinstance(resolved, ArrayObject) else [contents]
        for item in uses:
            if item is None:
                continue
            total += decoded_size(item)
            if total > limits.max_uncompressed_bytes:
                raise DocumentError(
                    f"page contents unpack to over {limits.max_uncompressed_bytes / _MB:g} MB, "
                    "the limit (CITEWISE_MAX_UNCOMPRESSED_MB)"
                )
    ratio = total / max(file_size, 1)
    if total > RATIO_CHECKED_ABOVE and ratio > limits.max_compression_ratio:
        raise DocumentError(
            f"page contents unpack to {total / _MB:,.1f} MB from a {file_size / 1024:,.0f} KB "
            f"file ({ratio:,.0f}:1), over the {limits.max_compression_ratio:g}:1 limit "
            "(CITEWISE_MAX_COMPRESSION_RATIO); a PDF bomb?"
        )


class _TooDeep(Exception):
    pass


class _DepthCounter:
    """An lxml parser target: counts open elements as libxml2 sees them, builds nothing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0

    def start(self, tag: str, attrib: Any) -> None:
        self.depth += 1
        if self.depth > self.limit:
            raise _TooDeep  # stops the parser at once: the rest need not be read

    def end(self, tag: str) -> None:
        self.depth -= 1

    def data(self, data: str) -> None:
        pass

    def close(self) -> None:
        pass


def check_html_depth(text: str, limits: ParseLimits) -> None:
    """Refuse markup nested deeper than the limit (implied end tags are applied as a browser
    would, so 300 unclosed ``<p>`` are siblings, not 300 levels)."""
    from lxml import etree

    limit = min(limits.max_nesting_depth, PARSER_MAX_DEPTH)
    # huge_tree lifts libxml2's own depth cap for this count only, so the count is exact.
    parser = etree.HTMLParser(target=_DepthCounter(limit), huge_tree=True, no_network=True)
    try:
        parser.feed(text)
        parser.close()
    except _TooDeep:
        raise DocumentError(_too_deep(limit)) from None


# Python-Markdown's fenced_code extension (which unstructured turns on) takes a line as an opening
# fence only at the very start of the line, and only when a later line closes it with the same
# run of backticks or tildes: an unclosed or indented fence is ordinary text, and the lines after
# it are parsed as Markdown (CommonMark differs on both counts). The guard must see exactly the
# code blocks the parser sees, or it skips lines the parser reads. This is the extension's
# opening-fence grammar for one line; an ``hl_lines`` value running onto later lines is not
# taken for a fence here, which can only make the guard read more lines, never fewer.
_FENCE_OPEN = re.compile(
    r"(?P<fence>~{3,}|`{3,})[ ]*"
    r"(?:\{(?P<attrs>.*)\}|(?:\.?[\w#.+-]*[ ]*)?(?:hl_lines=(?P<q>[\"'])[^\n]*?(?P=q)[ ]*)?)"
)
_FENCE_CLOSE = re.compile(r"(?P<fence>~{3,}|`{3,})[ ]*")


# Python-Markdown's link, image and reference patterns each scan from a ``[`` to its matching
# ``]``, or to the end of the paragraph when there is none, one character at a time in Python:
# unclosed or deeply nested brackets cost quadratic time, about half a second per million
# characters scanned (2,000 unclosed ``![`` in 4 KB took 3 s; 100 ``[`` before a 100 KB
# paragraph, 6 s). Ordinary prose scans about its own length.
MAX_BRACKET_SCAN = 2_000_000
_BRACKET_TOKEN = re.compile(r"\\.|\[|\]|\n(?:\n)+", re.DOTALL)


def bracket_scan(text: str) -> int:
    """Characters the link patterns read for the brackets in ``text`` (lines as
    ``markdown_lines`` gives them): from each ``[`` to its matching ``]``, or to the end of its
    paragraph when it has none. Backslash-escaped brackets are text. Stops past the limit."""
    scanned = 0
    opened: list[int] = []
    for token in _BRACKET_TOKEN.finditer(text):
        kind = token.group()
        if kind == "[":
            opened.append(token.start())
        elif kind == "]":
            if opened:
                scanned += token.start() - opened.pop()
        elif kind[0] == "\n":  # a blank line ends the paragraph: unclosed ones scan to here
            scanned += len(opened) * token.start() - sum(opened)
            opened.clear()
        if scanned > MAX_BRACKET_SCAN:
            break
    return scanned + len(opened) * len(text) - sum(opened)


def markdown_lines(text: str) -> list[str]:
    """The lines Python-Markdown's block parser sees (its ``NormalizeWhitespace`` step):
    newlines normalised, tabs expanded to four columns, blank lines emptied."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4)
    return [line if line.strip(" ") else "" for line in text.split("\n")]


def fenced_lines(lines: list[str]) -> list[bool]:
    """Which lines are fenced code to Python-Markdown: from the first opening fence that a
    later line closes to the first such closing line, and on from there. Linear: the closing
    lines of each fence are indexed once."""
    closers: dict[str, list[int]] = {}
    for number, line in enumerate(lines):
        if (closing := _FENCE_CLOSE.fullmatch(line)) is not None:
            closers.setdefault(closing["fence"], []).append(number)
    fenced = [False] * len(lines)
    number = 0
    while number < len(lines):
        opening = _FENCE_OPEN.fullmatch(lines[number])
        if opening is not None and _balanced_attrs(opening["attrs"]):
            candidates = closers.get(opening["fence"], [])
            at = bisect.bisect_right(candidates, number)
            if at < len(candidates):
                end = candidates[at]
                fenced[number : end + 1] = [True] * (end + 1 - number)
                number = end + 1
                continue
        number += 1
    return fenced


def _balanced_attrs(attrs: str | None) -> bool:
    """A ``{attrs}`` fence whose braces do not match is no fence to Python-Markdown."""
    if attrs is None:
        return True
    from markdown.extensions.attr_list import get_attrs_and_remainder

    return not get_attrs_and_remainder(attrs)[1]


def check_markdown(text: str, limits: ParseLimits) -> None:
    """Refuse Markdown whose lists and quotes nest deeper than the limit, raw HTML in it that
    does, and brackets that would cost the parser quadratic time (``bracket_scan``).

    A level of list costs two HTML elements (``<ul><li>``) and is indented at least two columns,
    so a line's depth is estimated as its ``>`` markers plus its indent in columns. Fenced code
    is text to the parser: it is neither measured nor scanned for brackets."""
    limit = min(limits.max_nesting_depth, PARSER_MAX_DEPTH)
    lines = markdown_lines(text)
    fenced = fenced_lines(lines)
    prose = "\n".join("" if code else line for line, code in zip(lines, fenced, strict=True))
    if (scanned := bracket_scan(prose)) > MAX_BRACKET_SCAN:
        raise DocumentError(
            "unclosed or deeply nested [ brackets: the Markdown parser would rescan "
            f"{scanned:,} characters for them (over {MAX_BRACKET_SCAN:,}), taking minutes"
        )
    for line, code in zip(lines, fenced, strict=True):
        if code:
            continue
        quotes = columns = 0
        for char in line:
            if char == ">":
                quotes += 1
            elif char == " ":
                columns += 1
            else:
                if quotes + columns > limit:
                    raise DocumentError(_too_deep(limit, "lists or quotes"))
                break
    check_html_depth(text, limits)


def _too_deep(limit: int, what: str = "elements") -> str:
    return f"{what} nested more than {limit} levels deep (CITEWISE_MAX_NESTING_DEPTH)"
