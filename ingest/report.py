"""What an ingest did (or, with ``--dry-run``, would do)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Failure:
    path: str
    error: str


@dataclass
class IngestReport:
    """The summary printed after an ingest; ``to_json`` is the ``--json`` contract."""

    kb: str
    dry_run: bool = False
    files_seen: int = 0
    files_added: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    failures: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # Which documents (source keys): every one, however many; the table shows the first few.
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skip_reasons: dict[str, str] = field(default_factory=dict)  # skipped path -> why
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_unchanged: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0  # added with a vector already stored under the same content hash
    embed_cache_hits: int = 0  # vectors taken from the Redis embedding cache, not the model
    # Sentences, list items and code blocks of the new chunks embedded ahead for the offline
    # answerer (``ingest.answer_units``); those already in the embedding cache are not counted.
    answer_units_embedded: int = 0
    seconds: float = 0.0
    # A web source's pass: mode, requests, 304s, pages missed... (``ingest.web``); None for files.
    web: dict[str, Any] | None = None

    def fail(self, path: str, error: str) -> None:
        self.failures.append(Failure(path, error))
        self.files_failed += 1

    def delete(self, path: str) -> None:
        self.deleted.append(path)
        self.files_deleted += 1

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append(path)
        self.skip_reasons[path] = reason
        self.files_skipped += 1

    def absorb(self, part: IngestReport) -> None:
        """Add what one shard of this ingest stored (``ingest.sharding``): the files it
        parsed and their chunks. Seen, unchanged and deleted files are counted by the job."""
        for name in _SHARD_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(part, name))
        self.failures += part.failures
        self.skipped += part.skipped
        self.added += part.added
        self.changed += part.changed
        self.skip_reasons |= part.skip_reasons

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IngestReport:
        failures = [Failure(**f) for f in data.get("failures", [])]
        return cls(**(data | {"failures": failures}))

    @property
    def changed_anything(self) -> bool:
        return bool(self.chunks_added or self.chunks_deleted or self.files_deleted)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


_SHARD_COUNTS = (
    "files_added", "files_changed", "files_skipped", "files_failed", "chunks_added",
    "chunks_deleted", "chunks_unchanged", "chunks_embedded", "chunks_reused", "embed_cache_hits",
    "answer_units_embedded",
)  # fmt: skip
