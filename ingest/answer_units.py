"""Answer units embedded at ingest, so that offline answers do not wait for the model.

The extractive answerer compares a question with the sentences, list items and code blocks
(units) of the passages it reads, through the embedding model: at 10k chunks that was 80% of
an ask's time (``bench/answer_latency.py``: 139 ms p50 with the units computed per question,
23 ms with their vectors cached). The units of a passage do not depend on the question, so
the ingest embeds them once, as it stores the passage, into the same Redis embedding cache
the answerer reads (``CachedEmbeddings``, keyed by the unit's text).

That costs the ingest about as much model time again as the chunks themselves (the units
hold the chunk's words, in shorter pieces), so it is a setting (``CITEWISE_INGEST_ANSWER_UNITS``)
and skipped when answers come from a language model, which never reads units. A unit whose
vector is missing later (evicted, expired, Redis away) is computed at question time as
before: the cache makes answers fast, never different.
"""

from __future__ import annotations

from collections.abc import Iterable

from langchain_core.embeddings import Embeddings

from citewise.answer.generators.extractive import comparable_units
from citewise.search.embedding_cache import CachedEmbeddings
from citewise.settings import Settings


def answer_unit_cache(settings: Settings, embeddings: Embeddings) -> CachedEmbeddings | None:
    """Where an ingest with these settings keeps answer units' vectors, or None when it
    does not embed them: not asked to, answers from a language model, or no cache."""
    wanted = settings.ingest.answer_units and settings.answering.provider == "extractive"
    return embeddings if wanted and isinstance(embeddings, CachedEmbeddings) else None


def embed_answer_units(cache: CachedEmbeddings, passages: Iterable[str]) -> int:
    """Cache the vectors of the answer units of ``passages``; returns how many the model
    computed (the rest were cached already)."""
    return cache.warm_documents([words for text in passages for words in comparable_units(text)])
