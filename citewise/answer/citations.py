"""Citation markers, their verification against the passages, and deep links.

An answer cites passage ``n`` with ``[n]`` after a claim. After generation every marker is
checked: one that names no given source is removed, and each sentence that carries a marker is
checked for support in the passage it cites (shared content words, after stemming). The
supporting span of the passage becomes the citation's ``quote``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote as url_quote

from citewise import stored_chunk
from citewise.answer.units import units
from citewise.search.lexical import tokenize
from citewise.search.store import Hit
from citewise.shapes import Citation

MARKER = re.compile(r"\[(\d{1,3})\]")
# A sentence ends at . ! or ? followed by space and an upper-case letter, digit or quote, or at
# a line break; not at the "2." that numbers a list item. Deliberately simple: it runs on
# passages and answers, not on arbitrary prose.
# A closing quote or bracket may follow the stop ('... a citizen." [1] The court'), and a
# marker is never the start of the next sentence ('rise... [1].' is one sentence).
_SENTENCE_END = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)\]]))(?<!^\d\.)(?<!^\d\d\.)(?<!^\d\d\d\.)"
    r"(?:\s*\[\d{1,3}\])*\s+(?=[\"'(A-Z0-9\u201c]|\[(?!\d{1,3}\]))|\n+"
    # a marker and a full stop end a claim whatever follows: "... context [2]. allow_origins"
    r"|(?<=\[\d\]\.)\s+|(?<=\[\d\d\]\.)\s+",
    re.MULTILINE,
)
# The gap a removed marker leaves before punctuation ("days [9]." -> "days ."), closed only
# where the punctuation ends something: ".include_router()" and "method .openapi()" keep theirs.
_GAP_BEFORE_STOP = re.compile(r"[ \t]+([.,;:!?])(?=\s|$|[\"')\]])")
SUPPORT_THRESHOLD = 0.5  # share of a claim's content words found in the cited passage
# A list item's marker is layout, not text: a quote starts after it, and so does the text
# fragment made from it (a rendered list shows a bullet, not a "- " a browser could match).
_LIST_MARKER = re.compile(r"(?:[-*+\u2022]|\d{1,3}[.)])\s+(?=\S)")


@dataclass(frozen=True)
class Span:
    text: str
    start: int
    end: int


def sentences(text: str) -> list[Span]:
    """Sentence spans of ``text`` with their character offsets; markers stay with their sentence."""
    spans: list[Span] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        spans.extend(_span(text, start, match.end()))
        start = match.end()
    spans.extend(_span(text, start, len(text)))
    return spans


def _span(text: str, start: int, end: int) -> list[Span]:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return []
    begin = start + len(piece) - len(piece.lstrip())
    marker = _LIST_MARKER.match(stripped)
    if marker:
        stripped, begin = stripped[marker.end() :], begin + marker.end()
    return [Span(stripped, begin, begin + len(stripped))]


class MarkerFilter:
    """Removes markers that name no source from a stream of text pieces, as they stream.

    Text that might be the start of a marker (``[`` and digits) is held back until it is
    known to be one; everything else passes through at once.
    """

    _PARTIAL = re.compile(r"\[\d{0,3}$")

    def __init__(self, source_count: int) -> None:
        self._count = source_count
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._clean(self._held + piece)
        partial = self._PARTIAL.search(text)
        if partial:
            self._held = text[partial.start() :]
            return text[: partial.start()]
        self._held = ""
        return text

    def flush(self) -> str:
        text, self._held = self._held, ""
        return text

    def _clean(self, text: str) -> str:
        return MARKER.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= self._count else "", text)


def strip_invalid_markers(answer: str, source_count: int) -> str:
    cleaned = MARKER.sub(
        lambda m: m.group(0) if 1 <= int(m.group(1)) <= source_count else "", answer
    )
    return _GAP_BEFORE_STOP.sub(r"\1", re.sub(r"[ \t]{2,}", " ", cleaned)).strip()


def claims(answer: str) -> Iterator[tuple[str, list[int]]]:
    """Each sentence of an answer (markers removed) with the source numbers it cites."""
    for span in sentences(answer):
        numbers = [int(n) for n in MARKER.findall(span.text)]
        text = _GAP_BEFORE_STOP.sub(r"\1", MARKER.sub("", span.text)).strip()
        if numbers and text:
            yield text, list(dict.fromkeys(numbers))


def support(claim: str, passage: str) -> tuple[float, Span]:
    """How much of ``claim`` the passage backs (0..1), and the passage unit that backs most.

    A claim whose key content is missing from the passage is backed not at all, however many
    of its other words the passage shares: "returns 404" is not backed by a passage about 201.
    """
    claim_terms = set(tokenize([claim])[0])
    # The passage cut as answers are cut (wrapped lines joined, list items apart), so the quote
    # is the whole unit an answer took from it.
    passage_sentences = [Span(u.text, u.start, u.end) for u in units(passage)] or [
        Span(passage, 0, len(passage))
    ]
    if not claim_terms:
        return 0.0, passage_sentences[0]
    best = max(
        passage_sentences,
        key=lambda s: len(claim_terms & set(tokenize([s.text])[0])),
    )
    if not key_content(claim) <= key_content(passage, every=True):
        return 0.0, best
    covered = claim_terms & set(tokenize([passage])[0])
    return len(covered) / len(claim_terms), best


# Numbers, and names: words with a capital or a digit inside, or an underscore or dot between
# letters (CORSMiddleware, HTTP, add_task, v2.1), and capitalised words that do not start a
# sentence (Paris, Pydantic). They carry a claim; "the", "returns" and "status" do not.
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_NAME = re.compile(r"\b(?:[A-Za-z]+[A-Z0-9_.][\w.]*[A-Za-z0-9]|[A-Z][a-z]+)\b")


def key_content(text: str, *, every: bool = False) -> set[str]:
    """The numbers and names of ``text``, lower case (with ``every``, capitalised words that
    start a sentence too: a passage may state at a sentence's start what a claim names later)."""
    found = {n.replace(",", "") for n in _NUMBER.findall(text)}
    for match in _NAME.finditer(text):
        word = match.group(0).rstrip(".")
        starts_sentence = re.search(r"(?:^|[.!?:]\s+|\n\s*|[-*]\s+)$", text[: match.start()])
        if word[0].isupper() and word[1:].islower() and starts_sentence and not every:
            continue
        found.add(word.lower())
    if every:  # a passage holds a name if it holds it as a word of its own too
        found |= {w.lower() for w in re.findall(r"[\w.]+", text)}
    return found


def verify(
    answer: str, sources: Sequence[Hit], base_urls: Mapping[str, str], kb: str
) -> list[Citation]:
    """Citations of a (marker-cleaned) answer, one per cited source, best-supported quote."""
    found: dict[int, Citation] = {}
    best: dict[int, float] = {}
    for claim, numbers in claims(answer):
        for n in numbers:
            if not 1 <= n <= len(sources):
                continue
            hit = sources[n - 1]
            score, span = support(claim, hit.text)
            if n not in found or score > best[n]:  # quote the span of the best-backed claim
                citation = make_citation(n, hit, span, base_urls.get(kb, ""))
                if n in found:
                    citation.supported = found[n].supported
                    citation.unsupported_claims = found[n].unsupported_claims
                found[n], best[n] = citation, score
            citation = found[n]
            if score < SUPPORT_THRESHOLD:
                citation.supported = False
                citation.unsupported_claims.append(claim)
    return [found[n] for n in sorted(found)]


def make_citation(n: int, hit: Hit, span: Span, base_url: str) -> Citation:
    metadata = hit.metadata
    page = metadata.get(stored_chunk.PAGE)
    return Citation(
        n=n,
        chunk_id=hit.chunk_id,
        source=str(metadata.get(stored_chunk.SOURCE, "")),
        title=str(metadata.get(stored_chunk.TITLE, "")),
        heading=str(metadata.get(stored_chunk.HEADING, "")),
        page=int(page) if page is not None else None,
        quote=span.text,
        start=span.start,
        end=span.end,
        url=deep_link(metadata, span.text, base_url),
        supported=True,
        unsupported_claims=[],
    )


def deep_link(metadata: Mapping[str, Any], quote: str, base_url: str) -> str:
    """Where a reader sees the passage: the PDF page, the heading anchor, or a text fragment;
    on the page's own URL for a web source's document, else under ``base_url``."""
    source = str(metadata.get(stored_chunk.SOURCE, ""))
    page_url = metadata.get(stored_chunk.URL)
    target = str(page_url) if page_url else _join(base_url, source)
    page = metadata.get(stored_chunk.PAGE)
    if page is not None:
        return f"{target}#page={int(page)}"
    anchor = metadata.get(stored_chunk.ANCHOR)
    if anchor:
        return f"{target}#{url_quote(str(anchor), safe='-_.')}"
    words = quote.split()
    if not words:
        return target
    fragment = " ".join(words[:8])
    # "-" marks a prefix or suffix in a text directive ("- An item" would be read as one).
    return f"{target}#:~:text={url_quote(fragment, safe='').replace('-', '%2D')}"


def _join(base_url: str, source: str) -> str:
    path = url_quote(source, safe="/-_.~")
    if not base_url:
        return path
    return base_url.rstrip("/") + "/" + path
