"""Question -> scored chunks: dense (Chroma), lexical (BM25) or both fused.

Hybrid search takes the top candidates of each retriever and fuses them (by default a
weighted sum of per-query standardised scores; optionally weighted reciprocal rank fusion,
RRF; both measured on SciFact in the README), then drops near-duplicates of passages already
chosen (the de-duplication half of MMR: identical boilerplate in five files must not fill all
five slots).
Every returned hit carries its cosine similarity to the question, computed from the stored
vectors even when only BM25 found it, so one relevance floor works in every mode.
"""

from __future__ import annotations

import functools
import operator
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from cachetools import LRUCache
from langchain_core.embeddings import Embeddings

from citewise import metrics, stored_chunk
from citewise.errors import InvalidRequest
from citewise.knowledge_base import validate_kb
from citewise.search.lexical import LexicalIndex, LexicalStore
from citewise.search.lexical_sync import LexicalSync
from citewise.search.metadata_table import MetadataTable
from citewise.search.store import ChunkStore, Hit, KnowledgeBase, StaleKnowledgeBase
from citewise.settings import RetrievalSettings

MAX_K = 100
MAX_QUERY_CHARS = 2000
SOURCE_PREFIX = "source_prefix"
_NUMERIC = {
    stored_chunk.PAGE,
    stored_chunk.START,
    stored_chunk.END,
    stored_chunk.CHUNK_INDEX,
}  # the one filter that is not an exact metadata match

FilterValue = str | int | float | bool


class SearchMode(StrEnum):
    DENSE = "dense"
    BM25 = "bm25"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class Filters:
    """Exact matches on chunk metadata, plus an optional source path prefix."""

    equals: Mapping[str, FilterValue]
    source_prefix: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Filters:
        raw = dict(raw or {})
        prefix = raw.pop(SOURCE_PREFIX, None)
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidRequest(f"filter {SOURCE_PREFIX!r} must be a string")
        for key, value in raw.items():
            if not isinstance(value, FilterValue) or (isinstance(value, bool) and key in _NUMERIC):
                kind = type(value).__name__
                raise InvalidRequest(
                    f"filter {key!r} must be a string, number or boolean, not {kind}"
                )
        return cls(raw, prefix or None)

    def __bool__(self) -> bool:
        return bool(self.equals) or self.source_prefix is not None

    def mask(self, table: MetadataTable) -> np.ndarray:
        """Which of ``table``'s chunks pass: each key's distinct values are compared once."""
        passing = np.ones(len(table), dtype=bool)
        prefix = self.source_prefix
        if prefix:
            passing &= table.where(stored_chunk.SOURCE, lambda s: str(s).startswith(prefix))
        for key, wanted in self.equals.items():
            passing &= table.where(key, functools.partial(operator.eq, wanted))
        return passing


@dataclass(frozen=True)
class SearchQuery:
    """A checked search (``Retriever.query`` makes them): ``Retriever.search`` trusts it."""

    text: str  # stripped, not empty, at most MAX_QUERY_CHARS
    kb: str  # a valid name
    k: int  # 1..MAX_K
    mode: SearchMode
    filters: Filters


class Retriever:
    """Search any knowledge base of one store; built once per process."""

    def __init__(
        self,
        settings: RetrievalSettings,
        store: ChunkStore,
        embeddings: Embeddings,
        lexical: LexicalStore,
        sync: LexicalSync | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embeddings = embeddings
        self.lexical = lexical
        self.sync = sync  # with a Chroma server: keeps ``lexical`` in step with the store
        self._passages = PassageCache(settings.passage_cache_size)
        # The last questions' vectors: searching and reading around the hits both need one.
        self._query_vectors: LRUCache[str, np.ndarray] = LRUCache(maxsize=256)
        self._query_vectors_lock = threading.Lock()

    def query(
        self,
        text: str,
        *,
        kb: str,
        k: int,
        mode: SearchMode | str | None = None,
        filters: Filters | Mapping[str, Any] | None = None,
        internal: bool = False,
    ) -> SearchQuery:
        """A search as callers give it, checked: the one place raw search input is validated
        (``internal``: ``kb`` may be a staging name, which callers of the API cannot search)."""
        kb = validate_kb(kb, internal=internal)
        text = _checked_query(text)
        checked_k(k)
        checked_mode = _checked_mode(mode or self.settings.mode)
        if not isinstance(filters, Filters):
            filters = Filters.parse(filters)
        return SearchQuery(text, kb, k, checked_mode, filters)

    def search(self, query: SearchQuery) -> list[Hit]:
        """The ``query.k`` best chunks of ``query.kb`` for ``query.text``, best first."""
        started = time.perf_counter()
        if self.sync is not None:
            self.sync.refresh(query.kb)
        try:
            hits = self._search(query.text, query.kb, query.k, query.mode, query.filters)
        except StaleKnowledgeBase:  # dropped and re-created (ingest --rebuild) since opened
            self.store.forget(query.kb)
            hits = self._search(query.text, query.kb, query.k, query.mode, query.filters)
        metrics.RETRIEVAL_SECONDS.labels(query.mode.value).observe(time.perf_counter() - started)
        return hits

    def _search(
        self,
        query: str,
        kb: str,
        k: int,
        mode: SearchMode,
        filters: Filters,
    ) -> list[Hit]:
        index = self.lexical.load(kb)
        # Opened at the index's generation: a store another process changed is read anew.
        knowledge_base = self.store.opened(kb, generation=index.generation or None)
        if filters:
            _check_filter_keys(filters, index)
        depth = max(self.settings.candidates, k * 3)
        vector = self._query_vector(query)

        ranked: list[list[tuple[str, float]]] = []
        weights: list[float] = []
        exhaustive: list[bool] = []
        if mode in (SearchMode.DENSE, SearchMode.HYBRID):
            where = _chroma_where(filters, index)
            dense = [] if where is _NOTHING else knowledge_base.nearest(vector, depth, where)
            ranked.append(dense)
            weights.append(self.settings.dense_weight)
            exhaustive.append(False)  # the passages it did not return are merely further away
        if mode in (SearchMode.BM25, SearchMode.HYBRID):
            allowed = _mask(filters, index)
            lexical = index.search(query, depth, allowed)
            ranked.append([(index.ids[h.position], h.score) for h in lexical])
            weights.append(self.settings.bm25_weight)
            exhaustive.append(len(lexical) < depth)  # fewer: the rest share no query term

        if len(ranked) == 1:  # one retriever: its own scores, its own order
            fused = dict(ranked[0])
        elif self.settings.fusion == "rrf":
            fused = rrf([[i for i, _ in r] for r in ranked], weights, self.settings.rrf_k)
        else:
            fused = zscore_fusion(ranked, weights, exhaustive)
        hits: list[Hit] = []
        chosen: list[np.ndarray] = []
        ranked_ids = list(fused)
        # Read the candidates' text and vectors best first, a few at a time: the first k + 3
        # nearly always fill the k slots (only near-duplicates are skipped), and reading all of
        # them (up to 2 x candidates, with their vectors) cost more than the dense search
        # itself: 5 ms of a 16 ms search on the sample (bench/serve.py).
        step = k + 3
        for start in range(0, len(ranked_ids), step):
            part = ranked_ids[start : start + step]
            chunks = self._passages.read(knowledge_base, index.generation, part)
            for chunk_id in part:
                if chunk_id not in chunks:  # deleted since the BM25 index was built
                    continue
                text, metadata, stored = chunks[chunk_id]
                if any(float(stored @ o) >= self.settings.dedup_similarity for o in chosen):
                    continue
                chosen.append(stored)
                hits.append(Hit(chunk_id, text, metadata, fused[chunk_id], float(stored @ vector)))
                if len(hits) == k:
                    return hits
        return hits

    def around(self, kb: str, hits: Sequence[Hit], question: str) -> list[Hit]:
        """The passages right before and after each of ``hits`` in its document (by
        ``chunk_index``) that are not among them, in the order of the hits they stand by;
        each with its own similarity to ``question``, and ``retrieved`` False.

        The sentence that answers often sits a passage away from the one that matched the
        question best ("Use BackgroundTasks" under the heading that only introduced it).
        """
        if not hits:
            return []
        index = self.lexical.load(kb)
        places = index.places()
        taken = {h.chunk_id for h in hits}
        wanted: list[str] = []
        for hit in hits:
            source = str(hit.metadata.get(stored_chunk.SOURCE, ""))
            at = hit.metadata.get(stored_chunk.CHUNK_INDEX)
            if not isinstance(at, int):
                continue
            for step in (-1, 1):
                position = places.get((source, at + step))
                if position is None:
                    continue
                chunk_id = index.ids[position]
                if chunk_id not in taken:
                    taken.add(chunk_id)
                    wanted.append(chunk_id)
        if not wanted:
            return []
        knowledge_base = self.store.opened(kb, generation=index.generation or None)
        try:
            chunks = self._passages.read(knowledge_base, index.generation, wanted)
        except StaleKnowledgeBase:  # dropped since the search: read nothing more
            return []
        vector = self._query_vector(question)
        return [
            Hit(i, text, metadata, 0.0, float(stored @ vector), retrieved=False)
            for i in wanted
            if i in chunks
            for text, metadata, stored in [chunks[i]]
        ]

    def _query_vector(self, text: str) -> np.ndarray:
        with self._query_vectors_lock:
            vector = self._query_vectors.get(text)
        if vector is None:
            vector = np.asarray(self.embeddings.embed_query(text), dtype=np.float32)
            with self._query_vectors_lock:
                self._query_vectors[text] = vector
        return vector


Passage = tuple[str, dict[str, Any], np.ndarray]


class PassageCache:
    """Text, metadata and vector of recently returned chunks, by knowledge base, corpus version
    and chunk id, so the passages many questions share skip a store read (about 1 ms of a 7 ms
    search, bench/serve.py). The corpus version covers ids and metadata, so an ingest that
    changes anything makes every older entry unreachable (then evicted as least recently used);
    without a published version nothing is kept.
    """

    def __init__(self, capacity: int) -> None:
        self._entries: LRUCache[tuple[str, str, str], Passage] | None = (
            LRUCache(maxsize=capacity) if capacity > 0 else None
        )
        self._lock = threading.Lock()  # LRUCache reorders itself on reads: not thread-safe

    def read(
        self, knowledge_base: KnowledgeBase, generation: str, ids: list[str]
    ) -> dict[str, Passage]:
        if self._entries is None or not generation:
            return knowledge_base.fetch(ids)
        kb = knowledge_base.kb
        found: dict[str, Passage] = {}
        with self._lock:
            for chunk_id in ids:
                entry = self._entries.get((kb, generation, chunk_id))
                if entry is not None:
                    found[chunk_id] = entry
        missing = [i for i in ids if i not in found]
        if missing:
            fetched = knowledge_base.fetch(missing)
            with self._lock:
                for chunk_id, entry in fetched.items():
                    self._entries[(kb, generation, chunk_id)] = entry
            found.update(fetched)
        # Callers get their own metadata dict: a cached one must not be changed through a hit.
        return {i: (text, dict(metadata), vector) for i, (text, metadata, vector) in found.items()}


def zscore_fusion(
    ranked: list[list[tuple[str, float]]],
    weights: list[float],
    exhaustive: Sequence[bool] | None = None,
) -> dict[str, float]:
    """Weighted sum of each retriever's scores, standardised per query (z-scores).

    Unlike rank fusion it keeps how far ahead a hit is: a passage BM25 scores far above the
    rest is not levelled with the runner-up. A hit one retriever did not return counts as
    that retriever's lowest returned score; but when a list is ``exhaustive`` (BM25 returned
    fewer than it was asked for: every other passage holds none of the query's terms) those
    hits score 0, and the list is standardised over every candidate. Otherwise a query whose
    rare word only one passage holds (an error code, a setting's name) standardised BM25's
    single score to 0 and lost it to the dense ranking.
    """
    ids = list(dict.fromkeys(chunk_id for hits in ranked for chunk_id, _ in hits))
    position = {chunk_id: n for n, chunk_id in enumerate(ids)}
    total = np.zeros(len(ids))
    complete = exhaustive or [False] * len(ranked)
    for hits, weight, whole in zip(ranked, weights, complete, strict=True):
        if not hits:
            continue
        values = np.fromiter((score for _, score in hits), dtype=np.float64, count=len(hits))
        places = [position[chunk_id] for chunk_id, _ in hits]
        if whole and len(hits) < len(ids):
            column = np.zeros(len(ids))
            column[places] = values
            column = (column - column.mean()) / (float(column.std()) or 1.0)
        else:
            z = (values - values.mean()) / (float(values.std()) or 1.0)
            column = np.full(len(ids), z.min())
            column[places] = z
        total += weight * column
    order = np.argsort(-total, kind="stable")  # ties keep first-seen order: deterministic
    return {ids[n]: float(total[n]) for n in order}


def rrf(ranked: list[list[str]], weights: list[float], k: int) -> dict[str, float]:
    """Weighted reciprocal rank fusion: id -> sum of weight / (k + rank), best first."""
    scores: dict[str, float] = {}
    for ids, weight in zip(ranked, weights, strict=True):
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    return dict(sorted(scores.items(), key=lambda item: item[1], reverse=True))


class _Nothing:
    """A filter no chunk can pass."""


_NOTHING: Any = _Nothing()


def _chroma_where(filters: Filters, index: LexicalIndex) -> Any:
    clauses: list[dict[str, Any]] = [{k: v} for k, v in filters.equals.items()]
    if filters.source_prefix:
        # Chroma has no prefix operator on metadata; resolve the prefix to the sources it names.
        prefix = filters.source_prefix
        named = index.metadatas.distinct(stored_chunk.SOURCE)
        sources = sorted({str(s) for s in named if str(s).startswith(prefix)})
        if not sources:
            return _NOTHING
        clauses.append({stored_chunk.SOURCE: {"$in": sources}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _mask(filters: Filters, index: LexicalIndex) -> np.ndarray | None:
    if not filters:
        return None
    return filters.mask(index.metadatas)


def _check_filter_keys(filters: Filters, index: LexicalIndex) -> None:
    known = index.metadatas.keys()
    known.update((stored_chunk.SOURCE, stored_chunk.TITLE, stored_chunk.HEADING, stored_chunk.PAGE))
    unknown = sorted(set(filters.equals) - known)
    if unknown:
        names = ", ".join(sorted(known | {SOURCE_PREFIX}))
        raise InvalidRequest(f"unknown filter {unknown[0]!r}; filters can use: {names}")


def _checked_query(query: str) -> str:
    query = query.strip()
    if not query:
        raise InvalidRequest("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"the query is longer than {MAX_QUERY_CHARS} characters")
    return query


def checked_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k must be between 1 and {MAX_K}")
    return k


def _checked_mode(mode: SearchMode | str) -> SearchMode:
    try:
        return SearchMode(mode)
    except ValueError:
        choices = ", ".join(m.value for m in SearchMode)
        raise InvalidRequest(f"unknown search mode {mode!r}; use one of: {choices}") from None
