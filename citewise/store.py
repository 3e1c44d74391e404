"""The vector store: one Chroma collection per knowledge base, with its model recorded.

Chroma is used directly (no LangChain ``VectorStore`` wrapper): the ingest needs to read
stored vectors back by content hash and to update metadata without re-embedding, which the
wrapper does not expose.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import NotFoundError

from citewise import models
from citewise.errors import EmbeddingModelMismatch, KnowledgeBaseNotFound, StoreUnavailable
from citewise.knowledge_base import COLLECTION_PREFIX, collection_name
from citewise.settings import Settings

MODEL_KEY = "citewise_embedding_model"
DIMENSION_KEY = "citewise_embedding_dim"


class StaleKnowledgeBase(Exception):
    """Raised when an opened knowledge base's collection was dropped since it was opened."""


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its ranking score and its cosine similarity to the query."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    score: float  # what the ranking used: cosine, BM25 or fused rank score, by search mode
    similarity: float  # cosine similarity to the query in every mode: the relevance floor


def open_client(settings: Settings, *, create: bool = True) -> ClientAPI | None:
    """The embedded Chroma under ``CITEWISE_HOME``; ``None`` if absent and ``create`` is off."""
    path = settings.chroma_path
    if not create and not path.exists():
        return None
    try:
        return chromadb.PersistentClient(
            path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
        )
    except Exception as exc:
        raise StoreUnavailable(f"cannot open the vector store: {type(exc).__name__}") from exc


class ChunkStore:
    """All knowledge bases of one Chroma client, bound to one embedding model."""

    def __init__(self, client: ClientAPI | None, model_name: str, dimension: int) -> None:
        self._client = client
        self.model_name = model_name
        self.dimension = dimension
        self._opened: dict[str, KnowledgeBase] = {}

    def opened(self, kb: str) -> KnowledgeBase:
        """Like ``knowledge_base(kb)``, but kept open between calls (searches): opening costs
        a metadata round trip, about 0.5 ms. ``StaleKnowledgeBase`` from one of its reads
        means it was dropped meanwhile: ``forget`` it and open it again."""
        found = self._opened.get(kb)
        if found is None:
            found = self._opened[kb] = self.knowledge_base(kb)
        return found

    def forget(self, kb: str) -> None:
        self._opened.pop(kb, None)

    def knowledge_base(self, kb: str, *, create: bool = False) -> KnowledgeBase:
        """Open a knowledge base, refusing one built with another embedding model."""
        name = collection_name(kb)
        if self._client is None:
            raise KnowledgeBaseNotFound(f"knowledge base {kb!r} does not exist; ingest it first")
        if create:
            collection = self._client.get_or_create_collection(
                name,
                metadata={MODEL_KEY: self.model_name, DIMENSION_KEY: self.dimension},
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,
            )
        else:
            try:
                collection = self._client.get_collection(name, embedding_function=None)
            except Exception as exc:  # chromadb raises NotFoundError or ValueError by version
                raise KnowledgeBaseNotFound(
                    f"knowledge base {kb!r} does not exist; ingest it first"
                ) from exc
        self._check_model(kb, collection.metadata or {})
        return KnowledgeBase(kb, collection, self._client.get_max_batch_size())

    def knowledge_bases(self) -> list[str]:
        """Names of every knowledge base in the store (raises if the store is unreachable)."""
        if self._client is None:
            return []
        try:
            names = [c.name for c in self._client.list_collections()]
        except Exception as exc:
            raise StoreUnavailable(f"cannot list knowledge bases: {type(exc).__name__}") from exc
        return sorted(
            n.removeprefix(COLLECTION_PREFIX) for n in names if n.startswith(COLLECTION_PREFIX)
        )

    def exists(self, kb: str) -> bool:
        if self._client is None:
            return False
        return collection_name(kb) in {c.name for c in self._client.list_collections()}

    def drop(self, kb: str) -> None:
        """Delete a knowledge base's collection (used by ``--rebuild``)."""
        self.forget(kb)
        if self._client is not None and self.exists(kb):
            self._client.delete_collection(collection_name(kb))

    def copy(self, source: str, target: str) -> int:
        """Make ``target`` an exact copy of ``source`` (vectors included, nothing re-embedded);
        returns the number of chunks copied. ``target`` is dropped first."""
        self.drop(target)
        into = self.knowledge_base(target, create=True)
        if not self.exists(source):
            return 0
        collection = self.knowledge_base(source)._collection
        copied = 0
        while True:
            found = collection.get(
                include=["documents", "metadatas", "embeddings"],
                limit=into._max_batch,
                offset=copied,
            )
            if not found["ids"]:
                return copied
            into._collection.upsert(
                ids=found["ids"],
                embeddings=found["embeddings"],
                documents=found["documents"],
                metadatas=found["metadatas"],
            )
            copied += len(found["ids"])

    def promote(self, staging: str, kb: str) -> None:
        """Make ``staging`` the collection of ``kb``, retiring the old one.

        Renames, not copies: the old collection is renamed aside, the staging one takes the
        name, the old one is deleted. Searches that had the old collection open keep reading
        it until it is deleted, then reopen by name (``StaleKnowledgeBase``); between the two
        renames (milliseconds) a search finds no collection and answers 404.
        """
        assert self._client is not None
        retired = f"{collection_name(kb)}.old"
        if retired in {c.name for c in self._client.list_collections()}:
            self._client.delete_collection(retired)  # left by a promotion that was killed
        if self.exists(kb):
            self._client.get_collection(collection_name(kb)).modify(name=retired)
        self._client.get_collection(collection_name(staging)).modify(name=collection_name(kb))
        self.forget(kb)
        self.forget(staging)
        if retired in {c.name for c in self._client.list_collections()}:
            self._client.delete_collection(retired)

    def _check_model(self, kb: str, metadata: Mapping[str, Any]) -> None:
        recorded = metadata.get(MODEL_KEY)
        dimension = metadata.get(DIMENSION_KEY)
        if recorded != self.model_name or dimension != self.dimension:
            raise EmbeddingModelMismatch(
                f"knowledge base {kb!r} was built with embedding model {recorded!r} "
                f"(dimension {dimension}), but {self.model_name!r} (dimension {self.dimension}) "
                f"is configured. Rebuild it with: citewise ingest PATH --kb {kb} --rebuild"
            )


class KnowledgeBase:
    """One knowledge base's chunks in Chroma."""

    def __init__(self, kb: str, collection: Collection, max_batch: int) -> None:
        self.kb = kb
        self._collection = collection
        self._max_batch = max(1, max_batch)

    def count(self) -> int:
        return self._collection.count()

    def chunks_of_source(self, source: str) -> dict[str, dict[str, Any]]:
        """id -> metadata of every stored chunk of one source document."""
        found = self._collection.get(where={models.SOURCE: source}, include=["metadatas"])
        metadatas = found["metadatas"] or []
        return {i: dict(m or {}) for i, m in zip(found["ids"], metadatas, strict=True)}

    def vectors_by_hash(self, hashes: Sequence[str]) -> dict[str, list[float]]:
        """Stored vectors for any of these chunk hashes, wherever in the knowledge base."""
        vectors: dict[str, list[float]] = {}
        for batch in _batches(list(dict.fromkeys(hashes)), 500):
            where: Any = {models.CHUNK_HASH: {"$in": batch}}
            found = self._collection.get(where=where, include=["metadatas", "embeddings"])
            embeddings = found["embeddings"] if found["embeddings"] is not None else []
            for metadata, vector in zip(found["metadatas"] or [], embeddings, strict=True):
                vectors.setdefault(str((metadata or {})[models.CHUNK_HASH]), list(vector))
        return vectors

    def upsert(self, chunks: Sequence[models.Chunk], vectors: Sequence[Sequence[float]]) -> None:
        for start in range(0, len(chunks), self._max_batch):
            part = chunks[start : start + self._max_batch]
            self._collection.upsert(
                ids=[c.id for c in part],
                embeddings=np.asarray(vectors[start : start + self._max_batch], dtype=np.float32),
                documents=[c.text for c in part],
                metadatas=[c.metadata for c in part],
            )

    def update_metadata(self, chunks: Sequence[models.Chunk]) -> None:
        """Rewrite metadata (offsets, index) of chunks whose text and vector are unchanged."""
        for part in _batches(list(chunks), self._max_batch):
            self._collection.update(ids=[c.id for c in part], metadatas=[c.metadata for c in part])

    def delete(self, ids: Sequence[str]) -> None:
        for part in _batches(list(ids), self._max_batch):
            self._collection.delete(ids=part)

    def delete_source(self, source: str) -> int:
        ids = list(self.chunks_of_source(source))
        self.delete(ids)
        return len(ids)

    def snapshot(self) -> dict[str, str]:
        """id -> chunk hash of everything stored: what tests compare after a crash."""
        found = self._collection.get(include=["metadatas"])
        return {
            i: str((m or {}).get(models.CHUNK_HASH))
            for i, m in zip(found["ids"], found["metadatas"] or [], strict=True)
        }

    def ids(self) -> list[str]:
        return list(self._collection.get(include=[])["ids"])

    def ids_and_metadatas(self) -> tuple[list[str], list[dict[str, Any]]]:
        found = self._collection.get(include=["metadatas"])
        return list(found["ids"]), [dict(m or {}) for m in (found["metadatas"] or [])]

    def all_chunks(self) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        """Every chunk's id, text and metadata (what the BM25 index is built from)."""
        found = self._collection.get(include=["documents", "metadatas"])
        documents = [d or "" for d in (found["documents"] or [])]
        metadatas = [dict(m or {}) for m in (found["metadatas"] or [])]
        return list(found["ids"]), documents, metadatas

    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]:
        """Text, metadata and vector of these chunks, by id."""
        if not ids:
            return {}
        try:
            found = self._collection.get(
                ids=list(ids), include=["documents", "metadatas", "embeddings"]
            )
        except NotFoundError as exc:
            raise StaleKnowledgeBase(self.kb) from exc
        vectors = found["embeddings"] if found["embeddings"] is not None else []
        return {
            i: (d or "", dict(m or {}), np.asarray(v, dtype=np.float32))
            for i, d, m, v in zip(
                found["ids"],
                found["documents"] or [],
                found["metadatas"] or [],
                vectors,
                strict=True,
            )
        }

    def nearest(
        self, vector: Sequence[float] | np.ndarray, k: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Ids and cosine similarities of the ``k`` nearest chunks, nothing else.

        A third of the cost of ``search`` at k=50: reading fifty passages and their metadata
        is what a query spends most on, and hybrid search needs only the few it keeps.
        """
        if k <= 0:
            return []
        try:
            found = self._collection.query(
                query_embeddings=np.asarray([vector], dtype=np.float32),
                n_results=k,
                where=where,
                include=["distances"],
            )
        except NotFoundError as exc:
            raise StaleKnowledgeBase(self.kb) from exc
        distances = (found["distances"] or [[]])[0]
        return [(i, 1.0 - float(d)) for i, d in zip(found["ids"][0], distances, strict=True)]

    def search(
        self, vector: Sequence[float] | np.ndarray, k: int, where: dict[str, Any] | None = None
    ) -> list[Hit]:
        """The ``k`` nearest chunks by cosine similarity (none from an empty collection)."""
        if k <= 0:
            return []
        found = self._collection.query(
            query_embeddings=np.asarray([vector], dtype=np.float32),
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        ids = found["ids"][0]
        documents = (found["documents"] or [[]])[0]
        metadatas = (found["metadatas"] or [[]])[0]
        distances = (found["distances"] or [[]])[0]
        return [
            Hit(i, d or "", dict(m or {}), 1.0 - float(dist), 1.0 - float(dist))
            for i, d, m, dist in zip(ids, documents, metadatas, distances, strict=True)
        ]


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
