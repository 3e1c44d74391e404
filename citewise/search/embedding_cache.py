"""Embeddings cached in Redis by (model, SHA-256 of the text), for documents and queries alike.

A re-ingest into a fresh store, a second knowledge base sharing documents, or a repeated query
embeds nothing twice. Keys are ``prefix:emb:<model>@<max tokens>:<d|q>:<sha256>``: the
truncation length is part of the model's identity, since it changes the vectors, and documents
(``d``) and queries (``q``) are kept apart because models such as e5 embed them differently
(MiniLM does not, so nothing is lost today). Values are the float32 bytes (1.5 KB for 384
dimensions, about a fifth of the JSON LangChain stores).

Why not LangChain's ``CacheBackedEmbeddings`` over a Redis byte store: it lives in
``langchain-classic`` (the legacy package, not a runtime dependency here); it stores vectors as
JSON text; it cannot say how many texts it found cached (the ingest report needs that); and a
store error would propagate and fail the ingest or the query, where here Redis failing only
means computing (see ``citewise.redis_client``). The wrapper is a LangChain ``Embeddings``, so
everything that takes one takes it.

A query's vector is written to Redis after the query has its vector, on one background
thread: the SET's round trip (0.3-0.6 ms beside a 2 ms embedding, bench/serve.py) is not
spent while someone waits for results. Documents are written before an ingest goes on (it
reports what it cached).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import redis
from langchain_core.embeddings import Embeddings

from citewise import metrics
from citewise.redis_client import RedisHandle, RedisUnavailable
from citewise.search.embeddings import LocalEmbeddings

BATCH = 1000  # keys per MGET / pipeline
# Query vectors waiting for Redis beyond this are not cached: a slow Redis must not grow a queue.
PENDING_QUERY_WRITES = 256

Vectors = dict[str, np.ndarray[Any, np.dtype[np.float32]]]


class _Namespace:
    """The keys of one kind of text (documents or queries), and its hit and miss counters."""

    def __init__(self, prefix: str, kind: str) -> None:
        self.prefix = prefix
        self.hits = metrics.EMBEDDING_CACHE.labels(kind, "hit")
        self.misses = metrics.EMBEDDING_CACHE.labels(kind, "miss")


class CachedEmbeddings(Embeddings):
    """``LocalEmbeddings`` with a Redis cache in front; Redis failures fall back to the model."""

    def __init__(self, model: LocalEmbeddings, handle: RedisHandle, ttl_s: int) -> None:
        self.model = model
        self._handle = handle
        self._ttl_s = ttl_s
        identity = f"{model.model_name}@{model.max_tokens}"
        self._documents = _Namespace(handle.key("emb", identity, "d") + ":", "document")
        self._queries = _Namespace(handle.key("emb", identity, "q") + ":", "query")
        self._query_writer = ThreadPoolExecutor(1, thread_name_prefix="citewise-query-cache")
        self._query_write_slots = threading.BoundedSemaphore(PENDING_QUERY_WRITES)

    @property
    def model_name(self) -> str:
        return self.model.model_name

    @property
    def loaded(self) -> bool:
        return self.model.loaded

    def load(self) -> None:
        self.model.load()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages, reading and filling the cache."""
        return self.embed_documents_counted(texts)[0]

    def embed_query(self, text: str) -> list[float]:
        """Embed one query, reading the cache (and filling it in the background)."""
        return self._embed([text], self._queries, self._write_later)[0][0]

    def embed_documents_counted(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """The vectors, and how many texts came from the cache instead of the model."""
        return self._embed(texts, self._documents, self._write)

    def flush(self) -> None:
        """Wait until every query vector computed so far has been written (or given up)."""
        self._query_writer.submit(lambda: None).result()

    def close(self) -> None:
        """Finish the pending query writes and stop the writer thread."""
        self._query_writer.shutdown(wait=True)

    def _embed(
        self, texts: Sequence[str], namespace: _Namespace, write: Callable[[Vectors], None]
    ) -> tuple[list[list[float]], int]:
        if not texts:
            return [], 0
        keys = [self._key(namespace.prefix, t) for t in texts]
        unique = list(dict.fromkeys(keys))
        found = self._read(unique)
        vectors: Vectors = {}
        for key, raw in zip(unique, found, strict=True):
            if raw is not None and len(raw) == 4 * self.model.dimension:
                vectors[key] = np.frombuffer(raw, dtype="<f4")
        hits = sum(1 for k in keys if k in vectors)
        namespace.hits.inc(hits)
        namespace.misses.inc(len(keys) - hits)  # Redis away counts too: those are computed
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in vectors}
        if missing:
            computed = self.model.embed_array(list(missing.values()))
            fresh = dict(zip(missing, computed, strict=True))
            write(fresh)
            vectors.update(fresh)
        return [vectors[k].tolist() for k in keys], hits

    def warm_documents(self, texts: Sequence[str]) -> int:
        """Cache the vectors of ``texts`` that are not cached yet, without returning any (an
        ingest warming what questions will ask for: holding them all as lists would cost
        ~30x their bytes); returns how many the model computed."""
        keys = list(dict.fromkeys(self._key(self._documents.prefix, t) for t in texts))
        if not keys:
            return 0
        text_of = {self._key(self._documents.prefix, t): t for t in texts}
        found = self._read(keys)
        missing = [
            k
            for k, raw in zip(keys, found, strict=True)
            if raw is None or len(raw) != 4 * self.model.dimension
        ]
        if missing:
            computed = self.model.embed_array([text_of[k] for k in missing])
            self._write(dict(zip(missing, computed, strict=True)))
        return len(missing)

    def cached_count(self, texts: Sequence[str]) -> int:
        """How many of these texts are cached (dry runs plan with it); 0 if Redis is away."""
        keys = list(dict.fromkeys(self._key(self._documents.prefix, t) for t in texts))
        total = 0
        try:
            for start in range(0, len(keys), BATCH):
                batch = keys[start : start + BATCH]
                total += int(self._handle.run(lambda r, b=batch: r.exists(*b)))  # type: ignore[misc]
        except RedisUnavailable:
            return 0
        return total

    @staticmethod
    def _key(namespace: str, text: str) -> str:
        return namespace + hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _read(self, keys: list[str]) -> list[bytes | None]:
        found: list[bytes | None] = []
        try:
            for start in range(0, len(keys), BATCH):
                batch = keys[start : start + BATCH]
                found.extend(self._handle.run(lambda r, b=batch: r.mget(b)))  # type: ignore[misc]
        except RedisUnavailable:
            return [None] * len(keys)
        return found

    def _write_later(self, vectors: Vectors) -> None:
        if not self._query_write_slots.acquire(blocking=False):
            return  # Redis is that far behind: compute this query again next time
        try:
            future = self._query_writer.submit(self._write, vectors)
        except RuntimeError:  # closed: the service is stopping
            self._query_write_slots.release()
            return
        future.add_done_callback(lambda _: self._query_write_slots.release())

    def _write(self, vectors: Vectors) -> None:
        items = list(vectors.items())

        def write(client: redis.Redis, batch: list[tuple[str, Any]]) -> None:
            if len(batch) == 1:  # a query: building a pipeline costs more than the SET itself
                key, vector = batch[0]
                client.set(key, np.asarray(vector, dtype="<f4").tobytes(), ex=self._ttl_s)
                return
            with client.pipeline(transaction=False) as pipe:
                for key, vector in batch:
                    pipe.set(key, np.asarray(vector, dtype="<f4").tobytes(), ex=self._ttl_s)
                pipe.execute()

        try:
            for start in range(0, len(items), BATCH):
                batch = items[start : start + BATCH]
                self._handle.run(lambda r, b=batch: write(r, b))  # type: ignore[misc]
        except RedisUnavailable:
            pass  # computed anyway; the next call will try to cache again
