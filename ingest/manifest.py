"""The ingest manifest: which file versions are fully stored, in SQLite under CITEWISE_HOME.

A file's row is written ``pending`` (with its new hash) before any of its chunks change in
Chroma and turned ``done`` only after they all have. A run killed in between leaves the row
pending, so the next run re-derives that file against what Chroma really holds. That, plus
deterministic chunk ids, makes every interrupted ingest converge to a clean ingest's index.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingest.sources import Source, legacy_sources

PENDING = "pending"
DONE = "done"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kbs (
    kb TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL
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
    PRIMARY KEY (kb, source)
);
"""


@dataclass(frozen=True)
class FileRecord:
    source: str
    root: str
    file_hash: str
    status: str
    chunk_count: int


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
            yield cls(connection, kb)
        finally:
            connection.close()

    def fingerprint(self) -> str | None:
        row = self._db.execute("SELECT fingerprint FROM kbs WHERE kb = ?", (self.kb,)).fetchone()
        return None if row is None else str(row[0])

    def set_fingerprint(self, fingerprint: str) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO kbs (kb, fingerprint) VALUES (?, ?) "
                "ON CONFLICT(kb) DO UPDATE SET fingerprint = excluded.fingerprint",
                (self.kb, fingerprint),
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
            "SELECT source, root, file_hash, status, chunk_count FROM files WHERE kb = ?",
            (self.kb,),
        )
        return {r[0]: FileRecord(*r) for r in rows}

    def mark(self, source: str, root: str, file_hash: str, status: str, chunks: int = 0) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO files (kb, source, root, file_hash, status, chunk_count, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(kb, source) DO UPDATE SET"
                " root = excluded.root, file_hash = excluded.file_hash,"
                " status = excluded.status, chunk_count = excluded.chunk_count,"
                " updated_at = excluded.updated_at",
                (self.kb, source, root, file_hash, status, chunks, time.time()),
            )

    def forget(self, source: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM files WHERE kb = ? AND source = ?", (self.kb, source))

    def copy_to(self, target: str, *, move: bool = False) -> None:
        """Make ``target``'s records a copy of this knowledge base's (``move``: and drop
        these), in one transaction."""
        with self._db:
            for table in ("files", "kbs", "sources"):
                self._db.execute(f"DELETE FROM {table} WHERE kb = ?", (target,))
            self._db.execute(
                "INSERT INTO files (kb, source, root, file_hash, status, chunk_count, updated_at)"
                " SELECT ?, source, root, file_hash, status, chunk_count, updated_at"
                " FROM files WHERE kb = ?",
                (target, self.kb),
            )
            self._db.execute(
                "INSERT INTO kbs (kb, fingerprint) SELECT ?, fingerprint FROM kbs WHERE kb = ?",
                (target, self.kb),
            )
            self._db.execute(
                "INSERT INTO sources (kb, name, root, prefix, created_at)"
                " SELECT ?, name, root, prefix, created_at FROM sources WHERE kb = ?",
                (target, self.kb),
            )
            if move:
                for table in ("files", "kbs", "sources"):
                    self._db.execute(f"DELETE FROM {table} WHERE kb = ?", (self.kb,))

    def forget_all(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM files WHERE kb = ?", (self.kb,))
            self._db.execute("DELETE FROM kbs WHERE kb = ?", (self.kb,))
