"""Removing a knowledge base, or one document, so that a kill at any moment leaves it whole or
gone, and the next delete or ingest of that knowledge base finishes what was begun.

Both follow the manifest's rule, mark first (``ingest.manifest``):

- a knowledge base: its tombstone is written first; then its Chroma collection goes (from then
  on every search of it is a 404 and ``/v1/models`` no longer lists it), then its BM25 index
  (its corpus version: no cached answer is looked up for it any more), its uploads folder, and
  last, in one transaction, its manifest rows with the tombstone;
- a document: its row turns ``deleting``, its chunks go, and the caller publishes the new BM25
  index before the row is forgotten.

The steps tolerate being repeated, so finishing is doing them again. Callers hold the
knowledge base's lock (``ingest.locks``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from citewise.search.lexical import LexicalStore
from citewise.search.store import ChunkStore
from citewise.settings import Settings
from ingest.manifest import DELETING, Manifest


def drop_knowledge_base(
    settings: Settings,
    store: ChunkStore,
    lexical: LexicalStore,
    kb: str,
    *,
    keep: Sequence[Path] = (),
) -> None:
    """Remove everything of ``kb``, whose tombstone is written, ending with the tombstone.

    ``keep``: paths an ingest is about to read; an uploads folder among them is left alone.
    """
    store.drop(kb)
    lexical.drop(kb)
    uploads = settings.uploads_path / kb
    if uploads.exists() and not any(_overlap(uploads, Path(path)) for path in keep):
        shutil.rmtree(uploads)
    with Manifest.open(settings.manifest_path, kb) as manifest:
        manifest.end_delete()


def drop_chunks(store: ChunkStore, kb: str, source: str) -> int:
    """Delete one document's chunks from the store; how many there were."""
    if not store.exists(kb):
        return 0
    return store.knowledge_base(kb).delete_source(source)


def finish_interrupted(
    settings: Settings,
    store: ChunkStore,
    lexical: LexicalStore,
    kb: str,
    *,
    keep: Sequence[Path] = (),
) -> None:
    """Finish a delete of ``kb``, or of documents of it, that was cut short: what an ingest
    does first. The ingest then publishes the BM25 index, as it always does last."""
    with Manifest.open(settings.manifest_path, kb) as manifest:
        tombstoned = manifest.deleting()
        half_deleted = [s for s, r in manifest.records().items() if r.status == DELETING]
    if tombstoned:
        drop_knowledge_base(settings, store, lexical, kb, keep=keep)
        return
    for source in half_deleted:
        drop_chunks(store, kb, source)
        with Manifest.open(settings.manifest_path, kb) as manifest:
            manifest.forget(source)


def _overlap(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents
