"""BM25 follows the store: with a Chroma server, each serving process keeps its own copy of a
knowledge base's BM25 index in step with the generation the last ingest recorded in Chroma.

API replicas may run on machines that never see the ingest's ``CITEWISE_HOME``, so they cannot
read the index it published there. The ingest therefore also records that index's generation
in the collection's metadata (``KnowledgeBase.record_generation``). A serving process compares
it with its local copy at most every ``CITEWISE_BM25_SYNC_S`` per knowledge base (one metadata
read) and, when they differ, rebuilds the copy from the chunks in Chroma with the same
``LexicalStore.rebuild`` the ingest runs. The copy then has the ingest's generation, so the
corpus version in answer-cache keys is the same on every replica and their cached answers are
shared; and it is still the generation of the index this process's retrieval reads, so a
replica that has not caught up yet keeps using the entries that match what it retrieves.

One rebuild per knowledge base at a time per process, in a background thread, while searches
keep using the copy they have; only a process with no copy at all builds before it answers.
The token cache makes a rebuild cheap (``bench/lexical.py``); several processes sharing one
``CITEWISE_HOME`` (uvicorn workers) build one after another, and the later ones find the copy
already built.
"""

from __future__ import annotations

import logging
import threading
import time

from citewise.errors import CitewiseError, KnowledgeBaseNotFound
from citewise.search.lexical import LexicalStore
from citewise.search.store import ChunkStore

log = logging.getLogger("citewise.search.lexical_sync")

_NEVER = object()  # "no rebuild has followed any recorded generation yet"


class LexicalSync:
    """Follows the generations recorded in one store for the indexes of one ``LexicalStore``."""

    def __init__(self, lexical: LexicalStore, store: ChunkStore, interval_s: float) -> None:
        self._lexical = lexical
        self._store = store
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._next_check: dict[str, float] = {}
        # The recorded generation each knowledge base's last rebuild followed. If the chunks
        # changed while it read them (an ingest was writing), its copy has another generation
        # than the recorded one; rebuilding again would give the same, so it waits for the
        # ingest to finish and record a new one.
        self._followed: dict[str, object] = {}
        self._building: dict[str, threading.Lock] = {}
        self._background: dict[str, threading.Thread] = {}

    def due(self, kb: str) -> bool:
        """Whether ``refresh`` would look at the store now (no I/O: for the event loop)."""
        return time.monotonic() >= self._next_check.get(kb, 0.0)

    def refresh(self, kb: str) -> None:
        """Bring the local copy of ``kb`` in step with the store, if it is time to look.

        Never raises: a store that cannot be read now is reported by the search that needs it.
        """
        now = time.monotonic()
        with self._lock:
            if now < self._next_check.get(kb, 0.0):
                return
            self._next_check[kb] = now + self._interval_s
        local = self._lexical.current_generation(kb)
        try:
            recorded = self._store.recorded_generation(kb)
        except KnowledgeBaseNotFound:
            # Deleted from the store: so is this copy, and with it the corpus version its
            # cached answers were looked up under. Looked at again on the next request.
            if local is not None:
                self._lexical.drop(kb)
                log.info("knowledge base %r is gone from the store: BM25 copy dropped", kb)
            self._retry_soon(kb, None)
            return
        except CitewiseError as exc:
            log.debug("cannot read the recorded BM25 generation of %r: %s", kb, exc)
            self._retry_soon(kb, local)
            return
        if self._followed_already(kb, local, recorded):
            return
        if local is None:  # nothing to serve meanwhile: build now, once for all callers
            try:
                self._rebuild(kb, recorded)
            except CitewiseError as exc:
                log.warning("cannot build the BM25 index of %r from the store: %s", kb, exc)
                self._retry_soon(kb, None)
            return
        with self._lock:
            running = self._background.get(kb)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(
                target=self._rebuild_logged, args=(kb, recorded), name=f"bm25-sync-{kb}"
            )
            thread.daemon = True  # a rebuild is redone from the store after a restart anyway
            self._background[kb] = thread
        thread.start()

    def wait(self, kb: str, timeout: float) -> bool:
        """Wait for a background rebuild of ``kb`` to finish; whether none is running."""
        with self._lock:
            running = self._background.get(kb)
        if running is not None:
            running.join(timeout)
            return not running.is_alive()
        return True

    def _followed_already(self, kb: str, local: str | None, recorded: str | None) -> bool:
        if local is None:
            return False
        if recorded == local:
            return True
        with self._lock:
            return self._followed.get(kb, _NEVER) == recorded

    def _retry_soon(self, kb: str, local: str | None) -> None:
        if local is None:  # without a copy every request should try again, not every interval
            with self._lock:
                self._next_check.pop(kb, None)

    def _rebuild_logged(self, kb: str, recorded: str | None) -> None:
        try:
            self._rebuild(kb, recorded)
        except CitewiseError as exc:
            log.warning("cannot rebuild the BM25 index of %r from the store: %s", kb, exc)
        except Exception:  # a background thread has no caller to tell
            log.exception("rebuilding the BM25 index of %r failed", kb)

    def _rebuild(self, kb: str, recorded: str | None) -> None:
        with self._lock:
            building = self._building.setdefault(kb, threading.Lock())
        with building:
            local = self._lexical.current_generation(kb)
            if self._followed_already(kb, local, recorded):  # another caller just built it
                return
            started = time.perf_counter()
            stored = self._store.knowledge_base(kb)
            ids, metadatas = stored.ids_and_metadatas()
            self._lexical.rebuild(kb, ids, metadatas, stored.texts_of)
            with self._lock:
                self._followed[kb] = recorded
            built = self._lexical.current_generation(kb)
            log.info(
                "BM25 index of %r rebuilt from the store: %d chunks in %.2f s%s",
                kb,
                len(ids),
                time.perf_counter() - started,
                "" if built == recorded or recorded is None else " (the store changed meanwhile)",
            )
