"""The units an extractive answer is made of: prose sentences, list items, table rows, code.

A passage is stored as it was parsed: blocks separated by blank lines; inside a block a list's
items and a table's rows are lines of their own, and prose may be hard-wrapped (PDF lines, a
wrapped ``.txt``). So a line break ends a unit only where the structure says so: between list
items, rows or code lines, or after a sentence's end; inside prose it is a space, and "at least
10" stays with "characters" on the next line.

Sentences end at ``.``, ``!`` or ``?`` before a capital, a digit, a quote or a bracket, unless
the word before the full stop is a known abbreviation or an initial ("e.g. The", "Fig. 2",
"J. Smith"). A rule set, not a model: it runs on every answer over a few thousand characters,
in well under a millisecond; spaCy's rule-based sentencizer (which the ingest already carries
for unstructured) splits at every full stop, abbreviations included, and pysbd, which handles
them, costs milliseconds per passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["sentence", "item", "row", "code"]

_BLOCK_BREAK = re.compile(r"\n[ \t]*\n\s*")
_LIST_ITEM = re.compile(r"(?:[-*+\u2022]|\d{1,3}[.)])\s+(?=\S)")
_CODE_LINE = re.compile(
    r"^(?:\s{4}|\t|>>>|\$ |(?:def|class|import|from|return|async|await|if|for|with|pip|uv|"
    r"python|uvicorn|fastapi|npm|curl|docker)\b.*[^.]$|@\w)|[{}();=]\s*$|^\s*[}\])]"
    # diagrams written as text (Mermaid): "participant A as B", "A->>B: hello"
    r"|^\s*(?:sequenceDiagram|flowchart|graph\s+[A-Z]{2}|participant|actor|Note\s+over)\b"
    r"|-+>>?|==>"
)
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?:\s*\[\d{1,3}\])*(?=\s+[\"'(\[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "etc",
        "vs",
        "cf",
        "al",
        "approx",
        "ca",
        "resp",
        "incl",
        "fig",
        "figs",
        "eq",
        "eqs",
        "no",
        "nos",
        "ref",
        "refs",
        "sec",
        "sect",
        "tab",
        "vol",
        "pp",
        "ed",
        "eds",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "st",
        "jr",
        "sr",
        "inc",
        "ltd",
        "co",
        "corp",
        "dept",
        "univ",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "u.k",
    ]
)


@dataclass(frozen=True)
class Unit:
    """One unit of a passage: ``text`` is exactly ``passage[start:end]``; ``block`` numbers
    the paragraph, list, table or code block it belongs to."""

    text: str
    start: int
    end: int
    kind: Kind
    block: int

    @property
    def words(self) -> str:
        """The text on one line, as an answer shows it."""
        return " ".join(self.text.split())


def units(passage: str) -> list[Unit]:
    """Every unit of ``passage`` in reading order."""
    found: list[Unit] = []
    start = 0
    for number, end in enumerate([*(m.start() for m in _BLOCK_BREAK.finditer(passage)), None]):
        stop = len(passage) if end is None else end
        found.extend(_block_units(passage, start, stop, number))
        if end is not None:
            start = _BLOCK_BREAK.match(passage, end).end()  # type: ignore[union-attr]
    return found


def _block_units(passage: str, start: int, end: int, block: int) -> list[Unit]:
    text = passage[start:end]
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return []
    if sum(1 for line in lines if _CODE_LINE.search(line)) * 2 >= len(lines) and not (
        text.rstrip().endswith((".", "?", "!")) and len(lines) == 1
    ):
        return [_unit(passage, start, end, "code", block)]
    if all(" | " in line or line.strip().startswith("|") for line in lines) and len(lines) > 1:
        return _lines(passage, start, end, "row", block)
    # A list may follow its introducing lines without a blank line (PDF pages, wrapped text):
    # the lines before its first item are prose, the rest are items.
    cursor = start
    for line in text.split("\n"):
        if _LIST_ITEM.match(line.lstrip()):
            return [
                *_sentences(passage, start, cursor, block),
                *_items(passage, cursor, end, block),
            ]
        cursor += len(line) + 1
    return _sentences(passage, start, end, block)


def _lines(passage: str, start: int, end: int, kind: Kind, block: int) -> list[Unit]:
    found, cursor = [], start
    for line in passage[start:end].split("\n"):
        found.append(_unit(passage, cursor, cursor + len(line), kind, block))
        cursor += len(line) + 1
    return [u for u in found if u.text]


def _items(passage: str, start: int, end: int, block: int) -> list[Unit]:
    """A list's items; a line not starting with a marker continues the item above it."""
    starts: list[int] = []
    cursor = start
    for line in passage[start:end].split("\n"):
        if _LIST_ITEM.match(line.lstrip()) or not starts:
            starts.append(cursor)
        cursor += len(line) + 1
    bounds = [*starts[1:], end]
    found = []
    for item_start, item_end in zip(starts, bounds, strict=True):
        unit = _unit(passage, item_start, item_end, "item", block)
        marker = _LIST_MARKER_AT.match(unit.text)
        if marker:  # the marker is layout: the unit starts at the item's text
            unit = _unit(passage, unit.start + marker.end(), unit.end, "item", block)
        if unit.text:
            found.append(unit)
    return found


_LIST_MARKER_AT = re.compile(r"(?:[-*+\u2022]|\d{1,3}[.)])\s+")


def _sentences(passage: str, start: int, end: int, block: int) -> list[Unit]:
    found, cursor = [], start
    text = passage[start:end]
    for match in _SENTENCE_END.finditer(text):
        if _is_abbreviation(text, match.start()):
            continue
        found.append(_unit(passage, cursor, start + match.end(), "sentence", block))
        cursor = start + match.end()
    found.append(_unit(passage, cursor, end, "sentence", block))
    return [u for u in found if u.text]


def _is_abbreviation(text: str, stop: int) -> bool:
    if text[stop] != ".":
        return False
    word = re.search(r"([A-Za-z][A-Za-z.]*)$", text[:stop])
    if word is None:
        return False
    token = word.group(1).lower()
    return token in _ABBREVIATIONS or (len(token) == 1 and word.group(1).isupper())


def _unit(passage: str, start: int, end: int, kind: Kind, block: int) -> Unit:
    piece = passage[start:end]
    begin = start + len(piece) - len(piece.lstrip())
    finish = start + len(piece.rstrip())
    return Unit(passage[begin:finish], begin, max(begin, finish), kind, block)
