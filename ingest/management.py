"""Knowledge bases and documents as an operator manages them: list, show, delete.

One implementation for both faces: ``citewise kb ...`` / ``citewise docs ...`` and the
``/v1/kbs`` routes (which run it with ``citewise.threads.run_blocking``). It reads the manifest
(sources, documents, their status), the store (chunks, titles, the embedding model) and the
BM25 index (the corpus version), and deletes in the order ``ingest.removal`` explains, holding
the knowledge base's ingest lock so that no delete races an ingest.

A document's id is the first 16 hex digits of sha256(kb, NUL, its ``source`` key): stable
across ingests, different in every knowledge base, and never a path. Deleting a document does
not touch its file: a later ingest of the folder it came from adds it again if the file is
still there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citewise import stored_chunk
from citewise.errors import (
    DocumentNotFound,
    InvalidKnowledgeBaseName,
    InvalidRequest,
    KnowledgeBaseNotFound,
)
from citewise.knowledge_base import validate_kb
from citewise.redis_client import RedisHandle, RedisUnavailable, connect
from citewise.search.lexical import LexicalStore
from citewise.search.store import ChunkStore
from citewise.serving import answer_cache
from citewise.settings import Settings
from citewise.wiring import build_lexical, build_store
from ingest.locks import kb_lock
from ingest.manifest import DELETING, DONE, FailureRecord, FileRecord, Manifest
from ingest.pipeline import publish_lexical
from ingest.removal import drop_chunks, drop_knowledge_base

log = logging.getLogger("citewise.ingest.management")

MAX_PAGE = 1000  # documents per page at most (the API's ``limit``)
READY, DELETING_KB = "ready", "deleting"
# What a document's status is called, by its manifest row's status.
_STATUS = {DONE: "ok", "pending": "pending", DELETING: "deleting"}
# Whether cached answers were retired: done, nothing to retire (no Redis), or Redis failed.
RETIRED, NO_CACHE, UNREACHABLE = "retired", "none", "unreachable"


def document_id(kb: str, source: str) -> str:
    """A document's id: stable, short, and the same on every face."""
    return hashlib.sha256(f"{kb}\0{source}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DocumentPage:
    documents: list[dict[str, Any]]
    next_cursor: str | None  # pass back as ``cursor`` for the next page; None on the last


@dataclass(frozen=True)
class _Entry:
    """One document as the manifest knows it: its row, its last failure, or both."""

    source: str
    record: FileRecord | None
    failure: FailureRecord | None

    @property
    def root(self) -> str:
        if self.record is not None:
            return self.record.root
        assert self.failure is not None
        return self.failure.root


class Management:
    """Lists and deletes the knowledge bases and documents of one Citewise home and store.

    ``redis``: where cached answers are retired on a delete (none: nothing to retire, or the
    corpus version retires them anyway, see ``delete_document``).
    """

    def __init__(
        self,
        settings: Settings,
        store: ChunkStore,
        lexical: LexicalStore,
        redis: RedisHandle | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.lexical = lexical
        self.redis = redis

    # --- knowledge bases ---------------------------------------------------------------

    def knowledge_bases(self) -> list[dict[str, Any]]:
        """Every knowledge base in the store or the manifest, by name."""
        names = set(self.store.knowledge_bases())
        with self._manifest(None) as manifest:
            names |= set(manifest.knowledge_bases())
            return [self._describe(manifest.of(kb)) for kb in sorted(filter(_public, names))]

    def _describe(self, manifest: Manifest) -> dict[str, Any]:
        kb = manifest.kb
        records = manifest.records()
        described = self.store.describe(kb)
        model, chunks = described if described is not None else (None, 0)
        return {
            "name": kb,
            "status": DELETING_KB if manifest.deleting() else READY,
            "sources": [
                {"name": s.name, "folder": Path(s.root).name, "root": s.root}
                for s in manifest.sources()
            ],
            "documents": sum(1 for r in records.values() if r.status != DELETING),
            "chunks": chunks,
            "embedding_model": model,
            "corpus_version": self.lexical.current_generation(kb),
            "last_ingest_at": manifest.ingested_at(),
        }

    def delete_knowledge_base(self, kb: str) -> dict[str, Any]:
        """Delete ``kb`` whole: collection, BM25 index, manifest rows, uploads folder and cached
        answers; or finish a delete of it that was cut short."""
        validate_kb(kb)
        with kb_lock(self.settings, kb, _busy(kb)):
            with self._manifest(kb) as manifest:
                described = self._describe(manifest)
                if not (manifest.holds_anything() or self._has_parts(kb, described)):
                    raise KnowledgeBaseNotFound(f"knowledge base {kb!r} does not exist")
            with Manifest.open(self.settings.manifest_path, kb) as manifest:
                manifest.begin_delete()  # the tombstone: an interrupted delete is finished
            cache = self._retire_answers(kb)
            drop_knowledge_base(self.settings, self.store, self.lexical, kb)
        return {
            "kb": kb,
            "deleted": True,
            "documents": described["documents"],
            "chunks": described["chunks"],
            "answer_cache": cache,
        }

    def _has_parts(self, kb: str, described: dict[str, Any]) -> bool:
        return (
            described["embedding_model"] is not None
            or self.store.exists(kb)
            or described["corpus_version"] is not None
            or (self.settings.uploads_path / kb).exists()
        )

    # --- documents ---------------------------------------------------------------------

    def documents(
        self,
        kb: str,
        *,
        source: str | None = None,
        prefix: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DocumentPage:
        """The documents of ``kb`` in path order: of one source (by name), under a path
        prefix, ``limit`` at a time after ``cursor``."""
        if limit is not None and not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
        after = _decode_cursor(cursor) if cursor else None
        with self._manifest(kb) as manifest:
            self._check_live(manifest)
            names = _source_names(manifest)
            entries = _entries(manifest)
        if source is not None:
            entries = [e for e in entries if names.get(e.root) == source]
        if prefix:
            entries = [e for e in entries if e.source.startswith(prefix)]
        if after is not None:
            entries = [e for e in entries if e.source > after]
        page = entries if limit is None else entries[:limit]
        more = limit is not None and len(entries) > limit
        titles = self._first_chunks(kb, [e.source for e in page])
        documents = [_document(kb, e, names, titles.get(e.source)) for e in page]
        return DocumentPage(documents, _encode_cursor(page[-1].source) if more else None)

    def document(self, kb: str, doc_id: str) -> dict[str, Any]:
        """One document's record and its chunks in order, text included."""
        with self._manifest(kb) as manifest:
            self._check_live(manifest)
            names = _source_names(manifest)
            entry = _find(manifest, doc_id, None)
        passages = []
        if entry.record is not None and self.store.exists(kb):
            passages = self.store.knowledge_base(kb).passages_of_source(entry.source)
        first = passages[0][2] if passages else None
        return {
            "document": _document(kb, entry, names, first),
            "chunks": [
                {
                    "chunk_id": chunk_id,
                    "chunk_index": metadata.get(stored_chunk.CHUNK_INDEX),
                    "text": text,
                    "metadata": metadata,
                }
                for chunk_id, text, metadata in passages
            ],
        }

    def delete_document(
        self, kb: str, *, doc_id: str | None = None, path: str | None = None
    ) -> dict[str, Any]:
        """Delete one document (by id or by path): its chunks and its manifest row, then the
        BM25 index is published anew, so the corpus version changes and every answer cached
        under the old one is out of reach at once. Finishes a delete that was cut short."""
        if (doc_id is None) == (path is None):
            raise InvalidRequest("name the document by its id or by its path (not both)")
        validate_kb(kb)
        with kb_lock(self.settings, kb, _busy(kb)):
            with self._manifest(kb) as manifest:
                self._check_live(manifest)
                names = _source_names(manifest)
                entry = _find(manifest, doc_id, path)
            record = _document(
                kb, entry, names, self._first_chunks(kb, [entry.source]).get(entry.source)
            )
            with Manifest.open(self.settings.manifest_path, kb) as manifest:
                manifest.set_status(entry.source, DELETING)  # the mark: finished if cut short
            # Before the chunks go: an answer computed meanwhile is cached under the corpus
            # version that the new BM25 index replaces below.
            cache = self._retire_answers(kb)
            removed = drop_chunks(self.store, kb, entry.source)
            corpus = self.lexical.current_generation(kb)
            if self.store.exists(kb):
                corpus = publish_lexical(self.store, self.lexical, self.store.knowledge_base(kb))
            with Manifest.open(self.settings.manifest_path, kb) as manifest:
                manifest.forget(entry.source)
        return {
            "kb": kb,
            "deleted": record,
            "chunks_deleted": removed,
            "corpus_version": corpus,
            "answer_cache": cache,
        }

    # --- shared ------------------------------------------------------------------------

    @contextmanager
    def _manifest(self, kb: str | None) -> Iterator[Manifest]:
        """The manifest, read as it is (an absent one is empty and is not created)."""
        with Manifest.open(self.settings.manifest_path, kb or "", read_only=True) as manifest:
            yield manifest

    def _check_live(self, manifest: Manifest) -> None:
        """``KnowledgeBaseNotFound`` unless the knowledge base exists and is not being deleted."""
        kb = manifest.kb
        validate_kb(kb)
        if manifest.deleting():
            raise KnowledgeBaseNotFound(
                f"knowledge base {kb!r} is being deleted (a delete was interrupted: delete it "
                "again to finish)"
            )
        if not manifest.holds_anything() and not self.store.exists(kb):
            raise KnowledgeBaseNotFound(f"knowledge base {kb!r} does not exist; ingest it first")

    def _first_chunks(self, kb: str, sources: list[str]) -> dict[str, dict[str, Any]]:
        if not sources or not self.store.exists(kb):
            return {}
        return self.store.knowledge_base(kb).first_chunks(sources)

    def _retire_answers(self, kb: str) -> str:
        """Bump ``kb``'s answer-cache epoch; best effort, as the corpus version changes too."""
        if self.redis is None:
            return NO_CACHE
        try:
            answer_cache.flush_now(self.redis, kb)
        except RedisUnavailable:
            log.warning("cached answers of %r not retired now: Redis is unavailable", kb)
            return UNREACHABLE
        return RETIRED


@contextmanager
def open_management(settings: Settings, *, deleting: bool = False) -> Iterator[Management]:
    """``Management`` over the configured store (not created when absent) and, when it is to
    delete, the configured Redis, where cached answers are retired."""
    redis = connect(settings.redis, settings.redis_path) if deleting else None
    try:
        store = build_store(settings, create=False)
        try:
            yield Management(settings, store, build_lexical(settings), redis)
        finally:
            store.close()
    finally:
        if redis is not None:
            redis.close()


def _busy(kb: str) -> str:
    return (
        f"an ingest or delete of knowledge base {kb!r} is running; try again when it has finished"
    )


def _public(kb: str) -> bool:
    """Whether ``kb`` is a name callers use (not a gated ingest's staging copy)."""
    try:
        validate_kb(kb)
    except InvalidKnowledgeBaseName:
        return False
    return True


def _source_names(manifest: Manifest) -> dict[str, str]:
    return {s.root: s.name for s in manifest.sources()}


def _entries(manifest: Manifest) -> list[_Entry]:
    records, failures = manifest.records(), manifest.failures()
    return [
        _Entry(source, records.get(source), failures.get(source))
        for source in sorted(set(records) | set(failures))
    ]


def _find(manifest: Manifest, doc_id: str | None, path: str | None) -> _Entry:
    for entry in _entries(manifest):
        if entry.source == path or (doc_id and document_id(manifest.kb, entry.source) == doc_id):
            return entry
    named = f"id {doc_id!r}" if doc_id is not None else f"path {path!r}"
    raise DocumentNotFound(f"knowledge base {manifest.kb!r} has no document with {named}")


def _document(
    kb: str, entry: _Entry, names: dict[str, str], first: dict[str, Any] | None
) -> dict[str, Any]:
    record, failure = entry.record, entry.failure
    if record is not None and record.status == DELETING:
        status = "deleting"
    elif failure is not None:
        status = "failed"
    else:
        assert record is not None
        status = _STATUS.get(record.status, record.status)
    title = (first or {}).get(stored_chunk.TITLE)
    return {
        "id": document_id(kb, entry.source),
        "source": names.get(entry.root, Path(entry.root).name),
        "path": entry.source,
        "title": None if title is None else str(title),
        "chunks": record.chunk_count if record is not None else 0,
        "bytes": record.bytes if record is not None else None,
        "content_hash": record.file_hash if record is not None else None,
        "ingested_at": record.updated_at if record is not None else None,
        "status": status,
        "error": failure.error if failure is not None else None,
    }


def _encode_cursor(source: str) -> str:
    return base64.urlsafe_b64encode(source.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("cursor is not one a listing returned") from exc
