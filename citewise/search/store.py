"""The vector store: one Chroma collection per knowledge base, with its model recorded.

Chroma is used directly (no LangChain ``VectorStore`` wrapper): the ingest needs to read
stored vectors back by content hash and to update metadata without re-embedding, which the
wrapper does not expose.

Two clients, one code path: the embedded ``PersistentClient`` under ``CITEWISE_HOME/chroma``
(one machine), or ``HttpClient`` to the Chroma server named by ``CITEWISE_CHROMA_URL`` (shared
by replicas and workers). In chromadb 1.5 both report the same batch limit, keep collection
configuration and metadata alike (``modify`` replaces the metadata whole) and raise the same
``NotFoundError`` for a dropped collection; what only the server can do is fail in transit,
which becomes ``StoreUnavailable`` here, with a message that names no host or library.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import chromadb
import httpx
import numpy as np
from chromadb.api import ClientAPI, ServerAPI
from chromadb.api.client import Client
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromadbSettings
from chromadb.config import System
from chromadb.errors import ChromaError, NotFoundError

from citewise import metrics, stored_chunk
from citewise.errors import EmbeddingModelMismatch, KnowledgeBaseNotFound, StoreUnavailable
from citewise.knowledge_base import COLLECTION_PREFIX, collection_name
from citewise.settings import ChromaSettings

log = logging.getLogger("citewise.search.store")

MODEL_KEY = "citewise_embedding_model"
DIMENSION_KEY = "citewise_embedding_dim"
# The BM25 generation the last ingest published (``citewise.search.lexical_sync``).
GENERATION_KEY = "citewise_bm25_generation"
UNREACHABLE = "the vector store cannot be reached right now; try again shortly"
_PAGE = 5000  # chunks per read when reading a whole knowledge base: bounded responses
_TOKEN_AUTH = "chromadb.auth.token_authn.TokenAuthClientProvider"


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
    retrieved: bool = True  # False: read because it stands next to a retrieved passage


def open_client(settings: ChromaSettings, path: Path, *, create: bool = True) -> ClientAPI | None:
    """The Chroma client the settings name.

    With ``CITEWISE_CHROMA_URL``, a client of that server (``create`` does not apply: the
    server exists or is unreachable). Otherwise the embedded store at ``path`` (under
    ``CITEWISE_HOME``); ``None`` if it is absent and ``create`` is off.
    """
    if settings.url is not None:
        return connect_server(settings)
    if not create and not path.exists():
        return None
    try:
        return chromadb.PersistentClient(
            path=str(path), settings=ChromadbSettings(anonymized_telemetry=False)
        )
    except Exception as exc:
        raise StoreUnavailable(f"cannot open the vector store: {type(exc).__name__}") from exc


def connect_server(settings: ChromaSettings) -> ClientAPI:
    """An ``HttpClient`` of the Chroma server, with ``CITEWISE_CHROMA_TIMEOUT_S`` on every call."""
    url = settings.url
    assert url is not None
    parts = urlsplit(url)
    ssl = parts.scheme == "https"
    timeout = httpx.Timeout(settings.timeout_s)
    options: dict[str, Any] = {"anonymized_telemetry": False}
    headers = {}
    if settings.token is not None:
        token = settings.token.get_secret_value()
        options["chroma_client_auth_provider"] = _TOKEN_AUTH
        options["chroma_client_auth_credentials"] = token
        headers["Authorization"] = f"Bearer {token}"  # what that provider sends
    try:
        # The client's first request (who am I) has no timeout of ours yet, and a frozen
        # server would hold it forever: a heartbeat with a timeout goes first.
        heartbeat = httpx.get(f"{url}/api/v2/heartbeat", headers=headers, timeout=timeout)
        heartbeat.raise_for_status()
        client = chromadb.HttpClient(
            host=str(parts.hostname),
            port=parts.port or (443 if ssl else 8000),
            ssl=ssl,
            settings=ChromadbSettings(**options),
        )
    except Exception as exc:  # httpx errors, or chromadb's ValueError("Could not connect...")
        log.warning("cannot connect to the Chroma server at %s: %s", url, _describe(exc))
        raise StoreUnavailable(UNREACHABLE) from exc
    # chromadb builds its httpx client without a timeout and offers no setting for one, so a
    # server that stops answering would hang every request; set it on that client.
    sessions = _sessions_of(client)
    for session in sessions:
        session.timeout = timeout
    if not sessions:
        log.warning("chromadb's HTTP client changed shape: CITEWISE_CHROMA_TIMEOUT_S not applied")
    return client


def fresh_view(client: ClientAPI) -> ClientAPI:
    """A new embedded client of the same folder, with a view of it read anew from disk.

    Chroma's embedded client loads each collection's vector index into memory once and never
    notices what other processes write to the folder afterwards: after another process's
    ingest it returns deleted ids and fails on new ones ("Error finding id"). chromadb shares
    one client state per folder within a process, so the new state replaces it for every later
    client of the folder; reads already under way finish on the old one. About 10 ms, plus the
    index loads again on the next query.
    """
    system = System(client.get_settings())
    system.instance(ServerAPI)  # type: ignore[type-abstract]  # as chromadb itself does
    system.start()
    return Client.from_system(system)


def _sessions_of(client: ClientAPI) -> list[httpx.Client]:
    """The httpx clients inside chromadb's ``HttpClient``: its own and its admin client's,
    which has a separate one (private attributes: checked, never assumed)."""
    sessions = []
    for part in (client, getattr(client, "_admin_client", None)):
        session = getattr(getattr(part, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            sessions.append(session)
    return sessions


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Reach:
    """Turns a Chroma server that cannot be reached into ``StoreUnavailable``, and logs once
    when it goes away and once when it is back (not once per request)."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._down = False

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except httpx.TransportError as exc:  # refused, reset, timed out: never an HTTP status
            if not self._down:
                self._down = True
                log.warning(
                    "the Chroma server at %s is unreachable: %s", self._where, _describe(exc)
                )
            raise StoreUnavailable(UNREACHABLE) from exc
        if self._down:
            self._down = False
            log.info("the Chroma server at %s answers again", self._where)


class ChunkStore:
    """All knowledge bases of one Chroma client, bound to one embedding model.

    ``connect`` makes the client on first use instead (the Chroma server): a service whose
    store is down at start still starts, reports not ready, and connects when it can.
    """

    def __init__(
        self,
        client: ClientAPI | None,
        model_name: str,
        dimension: int,
        *,
        connect: Callable[[], ClientAPI] | None = None,
        where: str = "embedded",
    ) -> None:
        self._client = client
        self._connect = connect
        self._connecting = threading.Lock()
        self._reach = _Reach(where)
        self.model_name = model_name
        self.dimension = dimension
        self._opened: dict[str, KnowledgeBase] = {}
        # The corpus generation each knowledge base was last read at (``opened``): a new one
        # means some process wrote to it, which an embedded client does not see by itself.
        self._read_at: dict[str, str] = {}

    def _api(self) -> ClientAPI | None:
        if self._client is None and self._connect is not None:
            with self._connecting:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def close(self) -> None:
        """Release the connections of a server client this store made. An embedded client is
        left open: chromadb shares it with every other client of the same folder."""
        with self._connecting:
            client, self._client = self._client, None
        self._opened.clear()
        if self._connect is not None and isinstance(client, Client):
            sessions = _sessions_of(client)
            client.close()
            for session in sessions:  # chromadb's close leaves their connections open
                session.close()

    @property
    def embedded(self) -> bool:
        """Whether this store reads a folder other processes may write to (not a server)."""
        return self._connect is None and self._client is not None

    def opened(self, kb: str, *, generation: str | None = None) -> KnowledgeBase:
        """Like ``knowledge_base(kb)``, but kept open between calls (searches): opening costs
        a metadata round trip, about 0.5 ms. ``StaleKnowledgeBase`` from one of its reads
        means it was dropped meanwhile: ``forget`` it and open it again.

        ``generation`` is the corpus generation the caller reads with (the published BM25
        index). When it differs from the last one seen for ``kb``, an ingest, by this process or
        another, changed the knowledge base, and an embedded client's view is renewed first
        (``fresh_view``), so what the ingest wrote is found and what it deleted is gone.
        """
        if generation is not None:
            self.follow(kb, generation)
        found = self._opened.get(kb)
        if found is not None and found.view_is_stale:
            self.renew()
            found = None
        if found is None:
            found = self._opened[kb] = self.knowledge_base(kb)
        return found

    def follow(self, kb: str, generation: str | None) -> None:
        """Note the corpus generation ``kb`` is read or written at, renewing an embedded view
        when it differs from the last one noted (another process changed the knowledge base)."""
        if generation is None:
            return
        seen = self._read_at.get(kb)
        self._read_at[kb] = generation
        if seen is not None and seen != generation and self.embedded:
            self.renew()

    def renew(self) -> None:
        """Read an embedded store anew from disk (see ``fresh_view``); a server needs nothing."""
        with self._connecting:
            if self.embedded:
                assert self._client is not None
                self._client = fresh_view(self._client)
                self._opened.clear()
                log.info("re-read the vector store from disk after a change by an ingest")

    def forget(self, kb: str) -> None:
        self._opened.pop(kb, None)

    def knowledge_base(self, kb: str, *, create: bool = False) -> KnowledgeBase:
        """Open a knowledge base, refusing one built with another embedding model."""
        name = collection_name(kb)
        client = self._api()
        if client is None:
            raise KnowledgeBaseNotFound(f"knowledge base {kb!r} does not exist; ingest it first")
        with self._reach.guard():
            if create:
                collection = client.get_or_create_collection(
                    name,
                    metadata={MODEL_KEY: self.model_name, DIMENSION_KEY: self.dimension},
                    configuration={"hnsw": {"space": "cosine"}},
                    embedding_function=None,
                )
            else:
                collection = self._collection(client, kb)
            max_batch = client.get_max_batch_size()
        self._check_model(kb, collection.metadata or {})
        return KnowledgeBase(kb, collection, max_batch, self._reach)

    def recorded_generation(self, kb: str) -> str | None:
        """The BM25 generation the last ingest of ``kb`` recorded, read fresh from the store
        (one round trip); ``None`` if no ingest recorded one."""
        client = self._api()
        if client is None:
            raise KnowledgeBaseNotFound(f"knowledge base {kb!r} does not exist; ingest it first")
        with self._reach.guard():
            metadata = self._collection(client, kb).metadata or {}
        recorded = metadata.get(GENERATION_KEY)
        return str(recorded) if recorded else None

    @staticmethod
    def _collection(client: ClientAPI, kb: str) -> Collection:
        try:
            return client.get_collection(collection_name(kb), embedding_function=None)
        except (NotFoundError, ValueError) as exc:  # chromadb raised ValueError before 1.0
            raise KnowledgeBaseNotFound(
                f"knowledge base {kb!r} does not exist; ingest it first"
            ) from exc

    def knowledge_bases(self) -> list[str]:
        """Names of every knowledge base in the store (raises if the store is unreachable)."""
        client = self._api()
        if client is None:
            return []
        try:
            with self._reach.guard():
                names = [c.name for c in client.list_collections()]
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"cannot list knowledge bases: {type(exc).__name__}") from exc
        return sorted(
            n.removeprefix(COLLECTION_PREFIX) for n in names if n.startswith(COLLECTION_PREFIX)
        )

    def describe(self, kb: str) -> tuple[str | None, int] | None:
        """The embedding model ``kb``'s collection records and how many chunks it holds, for a
        listing (no model is refused here); ``None`` if it has no collection."""
        client = self._api()
        if client is None:
            return None
        try:
            with self._reach.guard():
                collection = client.get_collection(collection_name(kb), embedding_function=None)
                model = (collection.metadata or {}).get(MODEL_KEY)
                return (None if model is None else str(model)), collection.count()
        except (NotFoundError, ValueError):
            return None

    def exists(self, kb: str) -> bool:
        client = self._api()
        if client is None:
            return False
        with self._reach.guard():
            return collection_name(kb) in {c.name for c in client.list_collections()}

    def drop(self, kb: str) -> None:
        """Delete a knowledge base's collection (used by ``--rebuild``)."""
        self.forget(kb)
        client = self._api()
        if client is not None and self.exists(kb):
            with self._reach.guard():
                client.delete_collection(collection_name(kb))

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

    def __init__(
        self, kb: str, collection: Collection, max_batch: int, reach: _Reach | None = None
    ) -> None:
        self.kb = kb
        self._collection = collection
        self._max_batch = max(1, max_batch)
        self._reach = reach or _Reach("embedded")
        # Set when a read found chunks the index lists but the store cannot return: another
        # process changed the knowledge base behind this view (``ChunkStore.opened`` renews it).
        self.view_is_stale = False

    def count(self) -> int:
        with self._reach.guard():
            return self._collection.count()

    def record_generation(self, generation: str) -> None:
        """Record the BM25 generation just published in the collection's metadata, where
        serving processes on other machines compare their copies with it."""
        metadata = dict(self._collection.metadata or {})
        if metadata.get(GENERATION_KEY) == generation:
            return
        metadata[GENERATION_KEY] = generation
        with self._reach.guard():
            self._collection.modify(metadata=metadata)  # replaces the metadata whole

    def chunks_of_source(self, source: str) -> dict[str, dict[str, Any]]:
        """id -> metadata of every stored chunk of one source document."""
        with self._reach.guard():
            found = self._collection.get(where={stored_chunk.SOURCE: source}, include=["metadatas"])
        metadatas = found["metadatas"] or []
        return {i: dict(m or {}) for i, m in zip(found["ids"], metadatas, strict=True)}

    def passages_of_source(self, source: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Id, text and metadata of every chunk of one document, in ``chunk_index`` order."""
        with self._reach.guard():
            found = self._collection.get(
                where={stored_chunk.SOURCE: source}, include=["documents", "metadatas"]
            )
        documents = found["documents"] or [""] * len(found["ids"])
        metadatas = found["metadatas"] or [{}] * len(found["ids"])
        passages = [
            (i, d or "", dict(m or {}))
            for i, d, m in zip(found["ids"], documents, metadatas, strict=True)
        ]
        return sorted(passages, key=lambda p: int(p[2].get(stored_chunk.CHUNK_INDEX) or 0))

    def first_chunks(self, sources: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Metadata of the first chunk (``chunk_index`` 0) of each of these documents, by
        source: where listings find a document's title."""
        first: dict[str, dict[str, Any]] = {}
        for batch in _batches(list(dict.fromkeys(sources)), 500):
            where: Any = {
                "$and": [{stored_chunk.SOURCE: {"$in": batch}}, {stored_chunk.CHUNK_INDEX: 0}]
            }
            with self._reach.guard():
                found = self._collection.get(where=where, include=["metadatas"])
            for metadata in found["metadatas"] or []:
                if metadata:
                    first[str(metadata.get(stored_chunk.SOURCE))] = dict(metadata)
        return first

    def vectors_by_hash(self, hashes: Sequence[str]) -> dict[str, list[float]]:
        """Stored vectors for any of these chunk hashes, wherever in the knowledge base."""
        vectors: dict[str, list[float]] = {}
        for batch in _batches(list(dict.fromkeys(hashes)), 500):
            where: Any = {stored_chunk.CHUNK_HASH: {"$in": batch}}
            with self._reach.guard():
                found = self._collection.get(where=where, include=["metadatas", "embeddings"])
            embeddings = found["embeddings"] if found["embeddings"] is not None else []
            for metadata, vector in zip(found["metadatas"] or [], embeddings, strict=True):
                vectors.setdefault(str((metadata or {})[stored_chunk.CHUNK_HASH]), list(vector))
        return vectors

    def upsert(
        self, chunks: Sequence[stored_chunk.Chunk], vectors: Sequence[Sequence[float]]
    ) -> None:
        for start in range(0, len(chunks), self._max_batch):
            part = chunks[start : start + self._max_batch]
            with self._reach.guard():
                self._collection.upsert(
                    ids=[c.id for c in part],
                    embeddings=np.asarray(
                        vectors[start : start + self._max_batch], dtype=np.float32
                    ),
                    documents=[c.text for c in part],
                    metadatas=[c.metadata for c in part],
                )

    def update_metadata(self, chunks: Sequence[stored_chunk.Chunk]) -> None:
        """Rewrite metadata (offsets, index) of chunks whose text and vector are unchanged."""
        for part in _batches(list(chunks), self._max_batch):
            with self._reach.guard():
                self._collection.update(
                    ids=[c.id for c in part], metadatas=[c.metadata for c in part]
                )

    def delete(self, ids: Sequence[str]) -> None:
        for part in _batches(list(ids), self._max_batch):
            with self._reach.guard():
                self._collection.delete(ids=part)

    def delete_source(self, source: str) -> int:
        ids = list(self.chunks_of_source(source))
        self.delete(ids)
        return len(ids)

    @staticmethod
    def _rows(found: Any) -> dict[str, tuple[str, dict[str, Any]]]:
        documents = found.get("documents") or [""] * len(found["ids"])
        metadatas = found.get("metadatas") or [{}] * len(found["ids"])
        return {
            i: (d or "", dict(m or {}))
            for i, d, m in zip(found["ids"], documents, metadatas, strict=True)
        }

    def _everything(self, include: list[Any]) -> dict[str, tuple[str, dict[str, Any]]]:
        """id -> (text, metadata) of every chunk, read a page at a time so that no response
        grows with the knowledge base (the server sends JSON). Keyed by id: a chunk that
        moved between pages while an ingest wrote is counted once."""
        everything: dict[str, tuple[str, dict[str, Any]]] = {}
        offset = 0
        while True:
            with self._reach.guard():
                found = self._collection.get(include=include, limit=_PAGE, offset=offset)
            everything.update(self._rows(found))
            if len(found["ids"]) < _PAGE:
                return everything
            offset += len(found["ids"])

    def texts_of(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> text of these chunks, a page at a time (bounded responses); ids the store
        cannot return are left out, as by ``fetch``."""
        texts: dict[str, str] = {}
        for page in _batches(list(ids), _PAGE):
            found = self._get_by_id(page, ["documents"])
            texts.update((i, text) for i, (text, _) in self._rows(found).items())
        return texts

    def snapshot(self) -> dict[str, str]:
        """id -> chunk hash of everything stored: what tests compare after a crash."""
        return {
            i: str(m.get(stored_chunk.CHUNK_HASH))
            for i, (_, m) in self._everything(["metadatas"]).items()
        }

    def ids(self) -> list[str]:
        return list(self._everything([]))

    def ids_and_metadatas(self) -> tuple[list[str], list[dict[str, Any]]]:
        found = self._everything(["metadatas"])
        return list(found), [m for _, m in found.values()]

    def all_chunks(self) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        """Every chunk's id, text and metadata (what the BM25 index is built from)."""
        found = self._everything(["documents", "metadatas"])
        return list(found), [d for d, _ in found.values()], [m for _, m in found.values()]

    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]:
        """Text, metadata and vector of these chunks, by id; ids the store cannot return are
        left out (logged and counted: ``citewise_store_missing_chunks_total``)."""
        if not ids:
            return {}
        return self._passages(self._get_by_id(ids, ["documents", "metadatas", "embeddings"]))

    def _get_by_id(self, ids: Sequence[str], include: list[Any]) -> Any:
        """Chroma's ``get`` of these ids (the fields ``include`` names); see ``fetch``."""
        try:
            with self._reach.guard():
                return self._collection.get(ids=list(ids), include=include)
        except NotFoundError as exc:
            raise StaleKnowledgeBase(self.kb) from exc
        except ChromaError:  # "Error finding id": one id of the batch is beyond this view
            return self._get_one_by_one(ids, include)

    def _get_one_by_one(self, ids: Sequence[str], include: list[Any]) -> dict[str, list[Any]]:
        self.view_is_stale = True
        merged: dict[str, list[Any]] = {"ids": [], **{field: [] for field in include}}
        missing: list[str] = []
        for chunk_id in ids:
            try:
                with self._reach.guard():
                    found = self._collection.get(ids=[chunk_id], include=include)
            except NotFoundError as exc:
                raise StaleKnowledgeBase(self.kb) from exc
            except ChromaError:
                missing.append(chunk_id)
                continue
            merged["ids"] += found["ids"]
            for field in include:
                merged[field] += list(found[field])  # type: ignore[literal-required]
        if missing:
            metrics.STORE_MISSING_CHUNKS.labels(self.kb).inc(len(missing))
            log.warning(
                "knowledge base %r: %d chunk(s) listed by the index could not be read from the "
                "vector store and were skipped (an ingest changed it meanwhile): %s",
                self.kb,
                len(missing),
                ", ".join(missing[:5]),
            )
        return merged

    @staticmethod
    def _passages(found: Any) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]:
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
            with self._reach.guard():
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
        with self._reach.guard():
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
