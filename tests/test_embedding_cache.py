"""The Redis embedding cache: re-ingests into fresh stores and other knowledge bases embed
nothing twice, queries are cached too, and the vectors are exactly the model's."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from citewise.answer.generators.base import REFUSAL
from citewise.answer.generators.extractive import ExtractiveGenerator
from citewise.redis_client import RedisHandle, connect
from citewise.search.embedding_cache import CachedEmbeddings
from citewise.search.embeddings import LocalEmbeddings
from citewise.search.store import Hit
from citewise.settings import Settings
from citewise.wiring import build_store
from ingest.pipeline import IngestPipeline
from ingest.report import IngestReport


@pytest.fixture
def handle(tmp_path: Path, cache_dir: Path, redis_url: str, redis_prefix: str) -> RedisHandle:
    settings = Settings(
        home=tmp_path, cache_dir=cache_dir, redis_url=redis_url, redis_prefix=redis_prefix
    )
    found = connect(settings.redis, settings.redis_path)
    assert found is not None
    return found


def ingest(
    home: Path,
    cache_dir: Path,
    embeddings: CachedEmbeddings,
    corpus: Path,
    kb: str = "default",
    dry_run: bool = False,
    **changes: Any,
) -> IngestReport:
    settings = Settings(home=home, cache_dir=cache_dir, redis_url="off", **changes)
    pipeline = IngestPipeline(settings, build_store(settings, create=not dry_run), embeddings)
    report = pipeline.run([corpus], kb, dry_run=dry_run)
    assert report.failures == []
    return report


def test_a_fresh_store_and_another_knowledge_base_embed_nothing_twice(
    tmp_path: Path, cache_dir: Path, corpus: Path, embeddings: LocalEmbeddings, handle: RedisHandle
) -> None:
    cached = CachedEmbeddings(embeddings, handle, ttl_s=600)

    first = ingest(tmp_path / "one", cache_dir, cached, corpus)
    assert first.chunks_embedded > 0 and first.embed_cache_hits == 0

    plan = ingest(tmp_path / "two", cache_dir, cached, corpus, dry_run=True)
    assert (plan.chunks_embedded, plan.embed_cache_hits) == (0, first.chunks_embedded)

    fresh = ingest(tmp_path / "two", cache_dir, cached, corpus)
    assert fresh.chunks_embedded == 0
    assert fresh.embed_cache_hits == first.chunks_embedded
    assert fresh.to_json()["embed_cache_hits"] == first.chunks_embedded

    other_kb = ingest(tmp_path / "one", cache_dir, cached, corpus, kb="copy")
    assert (other_kb.chunks_embedded, other_kb.embed_cache_hits) == (0, first.chunks_embedded)

    # The cached vectors are the model's, bit for bit.
    one = build_store(Settings(home=tmp_path / "one", cache_dir=cache_dir)).knowledge_base(
        "default"
    )
    two = build_store(Settings(home=tmp_path / "two", cache_dir=cache_dir)).knowledge_base(
        "default"
    )
    ids = one.ids()
    assert sorted(ids) == sorted(two.ids())
    stored_one, stored_two = one.fetch(ids), two.fetch(ids)
    for chunk_id in ids:
        assert np.array_equal(stored_one[chunk_id][2], stored_two[chunk_id][2])


class _CountingModel:
    """The model, noting every text it is asked to embed."""

    def __init__(self, model: LocalEmbeddings) -> None:
        self._model = model
        self.texts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def embed_array(self, texts: Sequence[str]) -> Any:
        self.texts.extend(texts)
        return self._model.embed_array(texts)


def test_an_ingest_embeds_answer_units_so_offline_answers_do_not_wait_for_the_model(
    tmp_path: Path, cache_dir: Path, corpus: Path, embeddings: LocalEmbeddings, handle: RedisHandle
) -> None:
    model = _CountingModel(embeddings)
    cached = CachedEmbeddings(model, handle, ttl_s=600)  # type: ignore[arg-type]
    # Not asked to, or answers written by a language model (which reads no units): none.
    # (The test environment switches the warm-up off, tests/conftest.py: on here, as shipped.)
    on = {"ingest_answer_units": True}
    off = {"ingest_answer_units": False}
    for n, changes in enumerate((off, on | {"answer_provider": "openai"})):
        skipped = ingest(tmp_path / f"other-{n}", cache_dir, cached, corpus, **changes)
        assert skipped.chunks_added > 0 and skipped.answer_units_embedded == 0

    report = ingest(tmp_path / "home", cache_dir, cached, corpus, **on)
    assert report.answer_units_embedded > 0
    assert report.to_json()["answer_units_embedded"] == report.answer_units_embedded
    again = ingest(tmp_path / "again", cache_dir, cached, corpus, **on)
    assert again.answer_units_embedded == 0  # all cached by the ingest before

    store = build_store(Settings(home=tmp_path / "home", cache_dir=cache_dir))
    ids, texts, metadatas = store.knowledge_base("default").all_chunks()
    hits = [Hit(i, t, m, 0.5, 0.5) for i, t, m in zip(ids, texts, metadatas, strict=True)]
    questions = ["How do I request a refund?", "What is a reviewer?", "How long do refunds take?"]
    model.texts.clear()
    generator = ExtractiveGenerator(cached)
    answers = [generator.compose(q, hits[:5]) for q in questions]
    assert all(a != REFUSAL for a in answers), answers
    assert set(model.texts) <= set(questions)  # the questions themselves, not one unit


def test_queries_are_cached_and_read_back(
    embeddings: LocalEmbeddings, handle: RedisHandle, redis_url: str, redis_prefix: str
) -> None:
    cached = CachedEmbeddings(embeddings, handle, ttl_s=600)
    query = "how long do refunds take"
    vector = cached.embed_query(query)
    assert vector == embeddings.embed_query(query)
    cached.flush()  # query vectors are written in the background

    client = redis.Redis.from_url(redis_url)
    digest = hashlib.sha256(query.encode()).hexdigest()
    [key] = client.keys(f"{redis_prefix}:emb:*:q:{digest}")
    assert key.decode() == f"{redis_prefix}:emb:all-MiniLM-L6-v2-int8@256:q:{digest}"
    assert 0 < client.ttl(key) <= 600
    assert np.array_equal(np.frombuffer(client.get(key), dtype="<f4"), np.float32(vector))

    # What is read is what the cache holds: replace the entry, and the query returns it.
    planted = np.full(embeddings.dimension, 0.5, dtype="<f4")
    client.set(key, planted.tobytes())
    assert cached.embed_query(query) == planted.tolist()
    # Queries and documents are kept apart (models such as e5 embed them differently).
    assert cached.embed_documents([query])[0] == vector


def test_without_redis_the_model_answers(
    embeddings: LocalEmbeddings, cache_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path, cache_dir=cache_dir, redis_url="redis://127.0.0.1:9/0", redis_retry_s=60
    )
    handle = connect(settings.redis, settings.redis_path)
    assert handle is not None
    cached = CachedEmbeddings(embeddings, handle, ttl_s=600)
    texts = ["refunds take five days", "invitations last a week"]
    assert cached.embed_documents_counted(texts) == (embeddings.embed_documents(texts), 0)
    assert cached.embed_query(texts[0]) == embeddings.embed_query(texts[0])
    assert cached.cached_count(texts) == 0
    assert handle.breaker.down


def test_closing_writes_the_last_query_vectors(
    embeddings: LocalEmbeddings, handle: RedisHandle, redis_url: str, redis_prefix: str
) -> None:
    cached = CachedEmbeddings(embeddings, handle, ttl_s=600)
    queries = [f"what does plan {n} cost" for n in range(5)]
    vectors = [cached.embed_query(q) for q in queries]
    cached.close()  # a stopping service: what was computed reaches Redis first

    client = redis.Redis.from_url(redis_url)
    for query, vector in zip(queries, vectors, strict=True):
        digest = hashlib.sha256(query.encode()).hexdigest()
        [key] = client.keys(f"{redis_prefix}:emb:*:q:{digest}")
        assert np.array_equal(np.frombuffer(client.get(key), dtype="<f4"), np.float32(vector))
    # Closed, it still embeds (nothing more is cached).
    late = "a question after shutdown began"
    assert cached.embed_query(late) == embeddings.embed_query(late)
    assert client.keys(f"{redis_prefix}:emb:*:q:{hashlib.sha256(late.encode()).hexdigest()}") == []
