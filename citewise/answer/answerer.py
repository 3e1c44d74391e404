"""Question -> grounded, cited answer, as a stream of events.

The event stream is the one contract every face shares: ``/v1/ask/stream`` sends it as
server-sent events, ``/v1/ask`` and ``citewise ask`` collect it, and the OpenAI-compatible
endpoint re-frames it. In order: ``sources``, ``delta``..., ``citations``, ``done``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from citewise import metrics, shapes, stored_chunk
from citewise.answer import question as asked
from citewise.answer.citations import (
    MarkerFilter,
    deep_link,
    strip_invalid_markers,
    verify,
)
from citewise.answer.generators.base import REFUSAL, Generator, Turn, is_refusal
from citewise.errors import InvalidRequest
from citewise.knowledge_base import validate_kb
from citewise.search.lexical import tokenize
from citewise.search.retrieval import Filters, Retriever, SearchMode, SearchQuery, checked_k
from citewise.search.store import Hit
from citewise.settings import AnsweringSettings
from citewise.shapes import (
    Answer,
    Citation,
    CitationsEvent,
    DeltaEvent,
    DoneEvent,
    Event,
    Source,
    SourcesEvent,
)
from citewise.threads import run_blocking

OVERLAP_WEIGHT = 0.5  # weight of question-word overlap in a passage's relevance
SOURCE_FLOOR_SHARE = 0.8  # once one passage clears the floor, others need this share of it


@dataclass(frozen=True)
class Question:
    """What a caller asks: the question, where, and the conversation so far (unchecked)."""

    text: str
    kb: str
    history: Sequence[Turn] = ()
    k: int | None = None
    filters: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CheckedQuestion:
    """A question checked once (``Answerer.check``): what ``Answerer.stream`` trusts."""

    text: str  # stripped, not empty, at most CITEWISE_MAX_QUESTION_CHARS
    kb: str  # a valid name
    history: tuple[Turn, ...]  # the last CITEWISE_MAX_HISTORY_TURNS (``trim_history``)
    k: int  # passages to retrieve, 1..MAX_K
    filters: Filters


class Collector:
    """The whole answer from a stream's events: the text comes with ``done``."""

    def __init__(self) -> None:
        self.sources: list[Source] = []
        self.citations: list[Citation] = []
        self.deltas: list[str] = []  # the pieces as streamed (a cached answer replays them)

    def add(self, event: Event) -> Answer | None:
        """Take one event; the answer once it is ``done``."""
        match event:
            case SourcesEvent(sources=sources):
                self.sources = sources
            case DeltaEvent(text=piece):
                self.deltas.append(piece)
            case CitationsEvent(citations=citations):
                self.citations = citations
            case DoneEvent():
                return Answer(
                    answer_id=event.answer_id,
                    answer=event.answer,
                    citations=self.citations,
                    sources=self.sources,
                    refused=event.refused,
                    cached=event.cached,
                    conversation_id=event.conversation_id,
                )
        return None


class Answerer:
    """Retrieves, generates and verifies; one per process, shared by all requests."""

    def __init__(
        self, settings: AnsweringSettings, retriever: Retriever, generator: Generator
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.generator = generator

    def check(self, question: Question) -> CheckedQuestion:
        """The one place a question is checked: ``InvalidRequest`` (or a subclass) if the text
        is empty or too long, the knowledge base name, ``k`` or the filters are bad."""
        text = question.text.strip()
        if not text:
            raise InvalidRequest("the question is empty")
        if len(text) > self.settings.max_question_chars:
            raise InvalidRequest(
                f"the question is longer than {self.settings.max_question_chars} characters"
            )
        kb = validate_kb(question.kb)
        filters = Filters.parse(question.filters)
        k = checked_k(question.k or self.settings.k)
        history = trim_history(question.history, self.settings.max_history_turns)
        return CheckedQuestion(text, kb, history, k, filters)

    async def stream(self, question: CheckedQuestion) -> AsyncIterator[Event]:
        text, history = question.text, question.history
        standalone = await self.generator.condense(text, history) if history else text
        mode = SearchMode(self.retriever.settings.mode)
        query = SearchQuery(standalone, question.kb, question.k, mode, question.filters)
        hits = await run_blocking(self.retriever.search, query)
        relevant = self._relevant(standalone, hits)
        if relevant and (reads := getattr(self.generator, "reads_around", 0)):
            # Providers that read around (the offline one) also see the passages next to
            # the best ones; they are sources like the others, marked ``retrieved: false``.
            nearby = await run_blocking(
                self.retriever.around, question.kb, relevant[:reads], standalone
            )
            relevant = relevant + nearby
        answer_id = uuid.uuid4().hex
        base_url = self.settings.kb_base_urls.get(question.kb, "")
        records = [source_record(n, h, base_url) for n, h in enumerate(relevant, 1)]
        yield SourcesEvent(sources=records, answer_id=answer_id)
        if not relevant:
            yield DeltaEvent(text=REFUSAL)
            yield CitationsEvent(citations=[])
            yield DoneEvent(answer_id=answer_id, refused=True, cached=False, answer=REFUSAL)
            return

        markers = MarkerFilter(len(relevant))
        parts: list[str] = []
        pieces = self.generator.stream(standalone, relevant)
        async for piece in _measured(pieces, self.settings.provider):
            cleaned = markers.feed(piece)
            if cleaned:
                parts.append(cleaned)
                yield DeltaEvent(text=cleaned)
        if tail := markers.flush():
            parts.append(tail)
            yield DeltaEvent(text=tail)
        answer = strip_invalid_markers("".join(parts), len(relevant))
        refused = is_refusal(answer)
        citations = (
            [] if refused else verify(answer, relevant, self.settings.kb_base_urls, question.kb)
        )
        yield CitationsEvent(citations=citations)
        yield DoneEvent(answer_id=answer_id, refused=refused, cached=False, answer=answer)

    async def ask(self, question: CheckedQuestion) -> Answer:
        """The whole answer at once (the stream, collected)."""
        collector, answer = Collector(), None
        async for event in self.stream(question):
            answer = collector.add(event) or answer
        assert answer is not None, "an answer stream ends with done"
        return answer

    def _relevant(self, question: str, hits: list[Hit]) -> list[Hit]:
        """The hits worth answering from, or none when even the best misses the floor.

        Relevance is cosine similarity plus half the share of the question's content words
        the passage (with its title) contains. Similarity alone separates answerable from
        unanswerable questions poorly on XQuAD (0.87 refusal at 4% false refusals); with the
        word overlap it is 0.94 at 3% (measurements in the README).
        """
        terms = set(tokenize([question])[0])
        scored = [(relevance(terms, h), h) for h in hits]
        floor = self.settings.min_relevance
        if not scored or max(r for r, _ in scored) < floor:
            return []
        relevant = [h for r, h in scored if r >= floor * SOURCE_FLOOR_SHARE]
        # And the sources must mention something the question names (asked.about_something_else).
        if asked.about_something_else(question, [_mentions(h) for h in relevant]):
            return []
        return relevant


async def _measured(pieces: AsyncIterator[str], provider: str) -> AsyncIterator[str]:
    """The provider's pieces, counted, with the time to the first and to the last observed.

    The times are wall time of the loop that consumes them, so they include sending each
    piece on; that is small next to a model's pace, and it is what a caller waits for.
    """
    count = metrics.GENERATED_PIECES.labels(provider)
    characters = metrics.GENERATED_CHARACTERS.labels(provider)
    started = time.perf_counter()
    first = True
    async for piece in pieces:
        if first:
            metrics.GENERATION_FIRST_TOKEN_SECONDS.labels(provider).observe(
                time.perf_counter() - started
            )
            first = False
        count.inc()
        characters.inc(len(piece))
        yield piece
    metrics.GENERATION_SECONDS.labels(provider).observe(time.perf_counter() - started)


def _mentions(hit: Hit) -> str:
    title = str(hit.metadata.get(stored_chunk.TITLE, ""))
    heading = str(hit.metadata.get(stored_chunk.HEADING, ""))
    return f"{title}\n{heading}\n{hit.text}"


def relevance(question_terms: set[str], hit: Hit) -> float:
    if not question_terms:
        return hit.similarity
    title = str(hit.metadata.get(stored_chunk.TITLE, ""))
    found = question_terms & set(tokenize([f"{title}\n{hit.text}"])[0])
    return hit.similarity + OVERLAP_WEIGHT * len(found) / len(question_terms)


def _passage(hit: Hit) -> dict[str, Any]:
    metadata = hit.metadata
    page = metadata.get(stored_chunk.PAGE)
    return {
        "chunk_id": hit.chunk_id,
        "source": metadata.get(stored_chunk.SOURCE, ""),
        "title": metadata.get(stored_chunk.TITLE, ""),
        "heading": metadata.get(stored_chunk.HEADING, ""),
        "page": int(page) if page is not None else None,
    }


def trim_history(history: Sequence[Turn], keep: int) -> tuple[Turn, ...]:
    """The last ``keep`` turns of a conversation (none for 0)."""
    return tuple(history)[-keep:] if keep else ()  # [-0:] would keep them all


def source_record(n: int, hit: Hit, base_url: str) -> Source:
    """A retrieved passage as clients see it (``sources`` event, ``/v1/ask``)."""
    return Source(
        n=n,
        **_passage(hit),
        url=deep_link(hit.metadata, hit.text, base_url),
        score=round(hit.score, 6),
        similarity=round(hit.similarity, 4),
        text=hit.text,
        retrieved=hit.retrieved,
    )


def hit_record(rank: int, hit: Hit, base_url: str) -> shapes.Hit:
    """A search hit as ``/v1/search`` and ``citewise search --json`` return it; ``base_url``
    is where its knowledge base is published (CITEWISE_KB_BASE_URLS), as for sources."""
    return shapes.Hit(
        rank=rank,
        **_passage(hit),
        url=deep_link(hit.metadata, hit.text, base_url),
        score=round(hit.score, 6),
        similarity=round(hit.similarity, 4),
        text=hit.text,
        metadata={k: v for k, v in hit.metadata.items() if k != stored_chunk.CHUNK_HASH},
    )
