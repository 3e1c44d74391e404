"""The per-knowledge-base lock: one writer at a time (an ingest, a delete), across processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout

from citewise.errors import KnowledgeBaseBusy
from citewise.settings import Settings


@contextmanager
def kb_lock(settings: Settings, kb: str, busy: str) -> Iterator[None]:
    """Hold ``kb``'s lock (a file under CITEWISE_HOME/locks) or raise ``KnowledgeBaseBusy``
    with the message ``busy`` at once: nothing waits for another writer."""
    settings.lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.lock_dir / f"{kb}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise KnowledgeBaseBusy(busy) from exc
    try:
        yield
    finally:
        lock.release()
