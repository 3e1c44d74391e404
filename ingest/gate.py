"""Eval-gated ingest: the next state of a knowledge base is built aside and promoted only if its
golden questions still find their documents.

A knowledge base may have golden questions: ``CITEWISE_GOLDEN_DIR/<kb>.jsonl``, one
``{"question": ..., "source": ...}`` per line, where ``source`` is the document (its path as
ingested) that must be among the top ``CITEWISE_GOLDEN_K`` search results. When the file exists,
an ingest job for that knowledge base:

1. copies the live knowledge base to a staging one (``<kb>.staging``: its Chroma collection with
   every vector, and its manifest records), so the ingest is as incremental as ever;
2. runs the ingest into the staging copy (it builds its own BM25 index);
3. asks the golden questions of the staging copy, with the service's own hybrid retrieval;
4. if the share found reaches ``CITEWISE_GOLDEN_MIN_HIT_RATE``, promotes it (the collections
   are swapped by renaming, the manifest records move, the live BM25 index is rebuilt, which
   also retires cached answers); otherwise it drops the staging copy and the live knowledge
   base is exactly as it was. Either way the job reports the score and the questions missed.

The live knowledge base's lock is held throughout, so no other ingest changes it meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from citewise.errors import InvalidRequest, KnowledgeBaseBusy
from citewise.knowledge_base import staging_of
from citewise.search.retrieval import Retriever
from citewise.settings import Settings
from ingest.manifest import Manifest
from ingest.pipeline import IngestPipeline, Progress
from ingest.removal import finish_interrupted
from ingest.report import IngestReport
from ingest.web.crawl import Site


@dataclass(frozen=True)
class Golden:
    question: str
    source: str


@dataclass
class GateResult:
    questions: int
    found: int
    threshold: float
    missed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hit_rate(self) -> float:
        return self.found / self.questions if self.questions else 1.0

    @property
    def passed(self) -> bool:
        return self.hit_rate >= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "found": self.found,
            "hit_rate": round(self.hit_rate, 4),
            "threshold": self.threshold,
            "passed": self.passed,
            "missed": self.missed,
        }


def golden_path(settings: Settings, kb: str) -> Path:
    return settings.golden_folder / f"{kb}.jsonl"


def load_golden(settings: Settings, kb: str) -> list[Golden] | None:
    """The knowledge base's golden questions, or ``None`` when it has none."""
    path = golden_path(settings, kb)
    if not path.is_file():
        return None
    golden = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            golden.append(Golden(str(record["question"]), str(record["source"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InvalidRequest(
                f"golden questions of {kb!r}, line {number}: expected "
                '{"question": "...", "source": "..."}'
            ) from exc
    return golden


def evaluate(retriever: Retriever, kb: str, golden: list[Golden], k: int) -> GateResult:
    """How many golden questions find their document in the top ``k`` of ``kb``."""
    result = GateResult(len(golden), 0, 0.0)
    for item in golden:
        hits = retriever.search(retriever.query(item.question, kb=kb, k=k, internal=True))
        sources = [str(h.metadata.get("source", "")) for h in hits]
        if item.source in sources:
            result.found += 1
        else:
            result.missed.append({"question": item.question, "source": item.source,
                                  "found": sources[:3]})  # fmt: skip
    return result


def gated_ingest(
    pipeline: IngestPipeline,
    paths: list[Path],
    kb: str,
    golden: list[Golden],
    *,
    rebuild: bool = False,
    progress: Progress | None = None,
    confine: Path | None = None,
    site: Site | None = None,
) -> tuple[IngestReport, GateResult]:
    """Ingest into a staging copy of ``kb`` and promote it only if the golden questions pass
    (``confine`` as for ``IngestPipeline.run``; ``site``: ingest that web source instead of
    ``paths``)."""
    settings, store = pipeline.settings, pipeline.store
    staging = staging_of(kb)
    settings.lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.lock_dir / f"{kb}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise KnowledgeBaseBusy(f"another ingest of knowledge base {kb!r} is running") from exc
    try:
        # A delete of ``kb`` cut short is finished before its state is copied.
        finish_interrupted(settings, store, pipeline.lexical, kb, keep=paths)
        if rebuild:
            store.drop(staging)
        else:
            store.copy(kb, staging)
        with Manifest.open(settings.manifest_path, kb) as manifest:
            manifest.copy_to(staging)
        try:
            if site is not None:
                report = pipeline.run_web(site, staging, progress=progress, internal=True)
            else:
                report = pipeline.run(
                    paths, staging, progress=progress, internal=True, confine=confine
                )
            retriever = Retriever(settings.retrieval, store, pipeline.embeddings, pipeline.lexical)
            result = evaluate(retriever, staging, golden, settings.ingest.golden_k)
            result.threshold = settings.ingest.golden_min_hit_rate
            if result.passed:
                _promote(pipeline, staging, kb)
        finally:
            _discard(pipeline, staging)
    finally:
        lock.release()
    report.kb = kb
    return report, result


def _promote(pipeline: IngestPipeline, staging: str, kb: str) -> None:
    pipeline.store.promote(staging, kb)
    with Manifest.open(pipeline.settings.manifest_path, staging) as manifest:
        manifest.copy_to(kb, move=True)
    promoted = pipeline.store.knowledge_base(kb)
    ids, metadatas = promoted.ids_and_metadatas()
    pipeline.lexical.rebuild(kb, ids, metadatas, promoted.texts_of)


def _discard(pipeline: IngestPipeline, staging: str) -> None:
    """Remove whatever is left of the staging copy (all of it, when it was not promoted)."""
    pipeline.store.drop(staging)
    with Manifest.open(pipeline.settings.manifest_path, staging) as manifest:
        manifest.forget_all()
    pipeline.lexical.drop(staging)
