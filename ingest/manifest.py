"""The ingest manifest: which file versions are fully stored, in SQLite under CITEWISE_HOME.

A file's row is written ``pending`` (with its new hash) before any of its chunks change in
Chroma and turned ``done`` only after they all have. A run killed in between leaves the row
pending, so the next run re-derives that file against what Chroma really holds. That, plus
deterministic chunk ids, makes every interrupted ingest converge to a clean ingest's index.

Deleting follows the same rule, mark first (``ingest.management``): a document's row turns
``deleting`` before its chunks go and is forgotten last; a knowledge base gets a row in
``deletions`` (its tombstone) before any of it goes, and loses it together with its last rows.
An interrupted delete is finished by the next delete or ingest of that knowledge base.

Besides what the ingest needs, rows keep what ``citewise docs list`` shows: each file's size,
the time of each knowledge base's last ingest, and each document's last failure (``failures``,
cleared when the file is read again or is gone).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingest.sources import Source, legacy_sources

PENDING = "pending"
DONE = "done"
DELETING = "deleting"  # a document delete started here (its chunks may be gone already)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kbs (
    kb TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    ingested_at REAL
);
CREATE TABLE IF NOT EXISTS sources (
    kb TEXT NOT NULL,
    name TEXT NOT NULL,
    root TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (kb, name)
);
CREATE TABLE IF NOT EXISTS files (
    kb TEXT NOT NULL,
    source TEXT NOT NULL,
    root TEXT NOT NULL,
    file_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    bytes INTEGER,
    PRIMARY KEY (kb, source)
);
CREATE TABLE IF NOT EXISTS failures (
    kb TEXT NOT NULL,
    source TEXT NOT NULL,
    root TEXT NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL,
    PRIMARY KEY (kb, source)
);
CREATE TABLE IF NOT EXISTS web_pages (
    kb TEXT NOT NULL,
    url TEXT NOT NULL,
    root TEXT NOT NULL,
    source TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    lastmod TEXT,
    links TEXT,
    fetched_at REAL NOT NULL,
    PRIMARY KEY (kb, url)
);
CREATE TABLE IF NOT EXISTS deletions (
    kb TEXT PRIMARY KEY,
    started_at REAL NOT NULL
);
"""
# Columns added after the first release: added to older manifests when they are opened.
_ADDED = {"kbs": {"ingested_at": "REAL"}, "files": {"bytes": "INTEGER", "misses": "INTEGER"}}
# Every table with rows of one knowledge base; ``deletions`` only ends with a delete.
_TABLES = ("files", "kbs", "sources", "failures", "web_pages")


@dataclass(frozen=True)
class FileRecord:
    source: str
    root: str
    file_hash: str
    status: str
    chunk_count: int
    updated_at: float = 0.0
    bytes: int | None = None
    misses: int = 0  # web pages: consecutive ingests that did not find it (``ingest.web``)


@dataclass(frozen=True)
class WebPageRecord:
    """What the last fetch of one URL of a web source said: the document it became and the
    validators for the next, conditional, request (``ingest.web.crawl``)."""

    url: str  # as requested (a sitemap entry, a link)
    root: str  # the web source's
    source: str  # the document's key
    etag: str | None = None
    last_modified: str | None = None
    lastmod: str | None = None  # the sitemap's, at that fetch
    links: tuple[str, ...] | None = None  # the page's links, for a crawl answered 304


@dataclass(frozen=True)
class FailureRecord:
    """Why a document's file could not be stored the last time it was read."""

    source: str
    root: str
    error: str
    failed_at: float


class Manifest:
    """Read and write one knowledge base's file records."""

    def __init__(self, connection: sqlite3.Connection, kb: str) -> None:
        self._db = connection
        self.kb = kb

    @classmethod
    @contextmanager
    def open(cls, path: Path, kb: str, *, read_only: bool = False) -> Iterator[Manifest]:
        """Open the manifest; read-only on a missing file yields an empty in-memory one."""
        if read_only and not path.exists():
            connection = sqlite3.connect(":memory:")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
        try:
            connection.executescript(_SCHEMA)
            _add_columns(connection)
            yield cls(connection, kb)
        finally:
            connection.close()

    def of(self, kb: str) -> Manifest:
        """The same manifest, for another knowledge base (one connection for a listing)."""
        return Manifest(self._db, kb)

    def fingerprint(self) -> str | None:
        row = self._db.execute("SELECT fingerprint FROM kbs WHERE kb = ?", (self.kb,)).fetchone()
        return None if row is None else str(row[0])

    def set_fingerprint(self, fingerprint: str) -> None:
        """Record the settings the knowledge base was ingested with, at the end of an ingest
        (which is what ``ingested_at`` dates)."""
        with self._db:
            self._db.execute(
                "INSERT INTO kbs (kb, fingerprint, ingested_at) VALUES (?, ?, ?) "
                "ON CONFLICT(kb) DO UPDATE SET fingerprint = excluded.fingerprint,"
                " ingested_at = excluded.ingested_at",
                (self.kb, fingerprint, time.time()),
            )

    def sources(self) -> list[Source]:
        """The registered sources; for a home made before sources existed, one per root its
        file rows record (``register`` then stores them)."""
        rows = self._db.execute(
            "SELECT name, root, prefix FROM sources WHERE kb = ? ORDER BY created_at, name",
            (self.kb,),
        ).fetchall()
        if rows:
            return [Source(*row) for row in rows]
        roots = self._db.execute("SELECT DISTINCT root FROM files WHERE kb = ?", (self.kb,))
        return legacy_sources([str(row[0]) for row in roots])

    def register(self, sources: list[Source]) -> None:
        """Store sources not stored yet (in one transaction, in the given order)."""
        now = time.time()
        with self._db:
            for n, source in enumerate(sources):
                self._db.execute(
                    "INSERT OR IGNORE INTO sources (kb, name, root, prefix, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (self.kb, source.name, source.root, source.prefix, now + n * 1e-6),
                )

    def records(self) -> dict[str, FileRecord]:
        rows = self._db.execute(
            "SELECT source, root, file_hash, status, chunk_count, updated_at, bytes,"
            " coalesce(misses, 0) FROM files WHERE kb = ?",
            (self.kb,),
        )
        return {r[0]: FileRecord(*r) for r in rows}

    def mark(
        self,
        source: str,
        root: str,
        file_hash: str,
        status: str,
        chunks: int = 0,
        size: int | None = None,
    ) -> None:
        """Write a file's row; ``size`` (bytes) is kept from the last mark that gave one. A
        document stored in full (``done``) has no failure any more."""
        self.mark_many([FileRecord(source, root, file_hash, status, chunks, bytes=size)])

    def mark_many(self, records: list[FileRecord]) -> None:
        """``mark`` each of ``records`` (``updated_at`` is now), in one transaction."""
        now = time.time()
        with self._db:
            for r in records:
                self._db.execute(
                    "INSERT INTO files"
                    " (kb, source, root, file_hash, status, chunk_count, updated_at, bytes)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(kb, source) DO UPDATE SET"
                    " root = excluded.root, file_hash = excluded.file_hash,"
                    " status = excluded.status, chunk_count = excluded.chunk_count,"
                    " updated_at = excluded.updated_at, bytes = coalesce(excluded.bytes, bytes)",
                    (self.kb, r.source, r.root, r.file_hash, r.status, r.chunk_count, now, r.bytes),
                )
                if r.status == DONE:
                    self._db.execute(
                        "DELETE FROM failures WHERE kb = ? AND source = ?", (self.kb, r.source)
                    )

    def set_status(self, source: str, status: str) -> None:
        """Change only a row's status (``deleting``: a delete of the document has begun)."""
        with self._db:
            self._db.execute(
                "UPDATE files SET status = ? WHERE kb = ? AND source = ?",
                (status, self.kb, source),
            )

    def forget(self, source: str) -> None:
        """Drop a document's row, its failure and what fetching it said, in one transaction."""
        with self._db:
            for table in ("files", "failures", "web_pages"):
                self._db.execute(
                    f"DELETE FROM {table} WHERE kb = ? AND source = ?", (self.kb, source)
                )

    # --- web sources -------------------------------------------------------------------

    def set_misses(self, source: str, misses: int) -> None:
        with self._db:
            self._db.execute(
                "UPDATE files SET misses = ? WHERE kb = ? AND source = ?",
                (misses, self.kb, source),
            )

    def web_pages(self, root: str) -> dict[str, WebPageRecord]:
        """The web source ``root``'s fetches, by URL requested."""
        rows = self._db.execute(
            "SELECT url, root, source, etag, last_modified, lastmod, links FROM web_pages"
            " WHERE kb = ? AND root = ?",
            (self.kb, root),
        )
        found = {}
        for url, source_root, source, etag, modified, lastmod, links in rows:
            kept = None if links is None else tuple(json.loads(links))
            found[url] = WebPageRecord(url, source_root, source, etag, modified, lastmod, kept)
        return found

    def save_web_pages(self, pages: list[WebPageRecord], gone: set[str]) -> None:
        """Record ``pages`` and forget the fetches of the URLs ``gone``, in one transaction."""
        now = time.time()
        with self._db:
            for url in gone:
                self._db.execute("DELETE FROM web_pages WHERE kb = ? AND url = ?", (self.kb, url))
            for p in pages:
                links = None if p.links is None else json.dumps(list(p.links))
                self._db.execute(
                    "INSERT OR REPLACE INTO web_pages (kb, url, root, source, etag,"
                    " last_modified, lastmod, links, fetched_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.kb, p.url, p.root, p.source, p.etag, p.last_modified, p.lastmod,
                     links, now),
                )  # fmt: skip

    def failures(self) -> dict[str, FailureRecord]:
        """The last failure of each document whose file could not be stored when last read."""
        rows = self._db.execute(
            "SELECT source, root, error, failed_at FROM failures WHERE kb = ?", (self.kb,)
        )
        return {r[0]: FailureRecord(*r) for r in rows}

    def note_failures(self, failed: dict[str, tuple[str, str]], cleared: set[str]) -> None:
        """Record ``failed`` (source -> (root, reason)) and clear the failures of ``cleared``
        (files read without failing, or gone), in one transaction."""
        now = time.time()
        with self._db:
            for source in cleared - set(failed):
                self._db.execute(
                    "DELETE FROM failures WHERE kb = ? AND source = ?", (self.kb, source)
                )
            for source, (root, error) in failed.items():
                self._db.execute(
                    "INSERT INTO failures (kb, source, root, error, failed_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT(kb, source) DO UPDATE SET"
                    " root = excluded.root, error = excluded.error,"
                    " failed_at = excluded.failed_at",
                    (self.kb, source, root, error, now),
                )

    def ingested_at(self) -> float | None:
        """When the last ingest of this knowledge base finished (for a manifest written before
        that was recorded: when a document of it last changed)."""
        row = self._db.execute(
            "SELECT coalesce((SELECT ingested_at FROM kbs WHERE kb = ?),"
            " (SELECT max(updated_at) FROM files WHERE kb = ?))",
            (self.kb, self.kb),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # --- deleting a whole knowledge base -----------------------------------------------

    def begin_delete(self) -> None:
        """Write the knowledge base's tombstone: from now on a delete is under way."""
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO deletions (kb, started_at) VALUES (?, ?)",
                (self.kb, time.time()),
            )

    def deleting(self) -> bool:
        """Whether a delete of this knowledge base began and has not finished."""
        found = self._db.execute("SELECT 1 FROM deletions WHERE kb = ?", (self.kb,))
        return found.fetchone() is not None

    def end_delete(self) -> None:
        """Forget every row of the knowledge base and then its tombstone, in one transaction."""
        with self._db:
            for table in (*_TABLES, "deletions"):
                self._db.execute(f"DELETE FROM {table} WHERE kb = ?", (self.kb,))

    def holds_anything(self) -> bool:
        """Whether any row of this knowledge base exists (a tombstone included)."""
        for table in (*_TABLES, "deletions"):
            found = self._db.execute(f"SELECT 1 FROM {table} WHERE kb = ? LIMIT 1", (self.kb,))
            if found.fetchone() is not None:
                return True
        return False

    def knowledge_bases(self) -> list[str]:
        """Every knowledge base with a row in this manifest (staging names included)."""
        names: set[str] = set()
        for table in (*_TABLES, "deletions"):
            names |= {str(r[0]) for r in self._db.execute(f"SELECT DISTINCT kb FROM {table}")}
        return sorted(names)

    def copy_to(self, target: str, *, move: bool = False) -> None:
        """Make ``target``'s records a copy of this knowledge base's (``move``: and drop
        these), in one transaction."""
        with self._db:
            for table in _TABLES:
                self._db.execute(f"DELETE FROM {table} WHERE kb = ?", (target,))
            self._db.execute(
                "INSERT INTO files"
                " (kb, source, root, file_hash, status, chunk_count, updated_at, bytes, misses)"
                " SELECT ?, source, root, file_hash, status, chunk_count, updated_at, bytes,"
                " misses FROM files WHERE kb = ?",
                (target, self.kb),
            )
            self._db.execute(
                "INSERT INTO web_pages (kb, url, root, source, etag, last_modified, lastmod,"
                " links, fetched_at) SELECT ?, url, root, source, etag, last_modified, lastmod,"
                " links, fetched_at FROM web_pages WHERE kb = ?",
                (target, self.kb),
            )
            self._db.execute(
                "INSERT INTO kbs (kb, fingerprint, ingested_at)"
                " SELECT ?, fingerprint, ingested_at FROM kbs WHERE kb = ?",
                (target, self.kb),
            )
            self._db.execute(
                "INSERT INTO failures (kb, source, root, error, failed_at)"
                " SELECT ?, source, root, error, failed_at FROM failures WHERE kb = ?",
                (target, self.kb),
            )
            self._db.execute(
                "INSERT INTO sources (kb, name, root, prefix, created_at)"
                " SELECT ?, name, root, prefix, created_at FROM sources WHERE kb = ?",
                (target, self.kb),
            )
            if move:
                for table in _TABLES:
                    self._db.execute(f"DELETE FROM {table} WHERE kb = ?", (self.kb,))

    def forget_all(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM files WHERE kb = ?", (self.kb,))
            self._db.execute("DELETE FROM kbs WHERE kb = ?", (self.kb,))
            self._db.execute("DELETE FROM failures WHERE kb = ?", (self.kb,))
            self._db.execute("DELETE FROM web_pages WHERE kb = ?", (self.kb,))


def _add_columns(db: sqlite3.Connection) -> None:
    """Add the columns a manifest written by an older version lacks (nothing is rewritten);
    two processes opening it at once may both try, which is harmless."""
    for table, columns in _ADDED.items():
        present = {str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")}
        for column, kind in columns.items():
            if column in present:
                continue
            try:
                with db:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise
