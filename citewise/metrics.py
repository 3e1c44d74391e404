"""Prometheus metrics: their names and labels, and the answer to a scrape.

The metrics are module-level objects, as loggers are: prometheus_client keeps one registry per
process (in multiprocess mode, one set of files per process), so a metric is a property of the
process, not of an app or a request. Labels stay bounded: route templates, never raw paths;
knowledge base names (created by admins) but never question text.

Several uvicorn workers: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by the
workers before they start (prometheus_client reads it when first imported). Every process then
writes its samples to files there, and a scrape served by any worker adds up all of them, those
of ``citewise ingest`` runs with the same variable included.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("citewise.metrics")

DepthSource = Callable[[], int] | Callable[[], Awaitable[int]]

HTTP_REQUEST_SECONDS = Histogram(
    "citewise_http_request_duration_seconds",
    "From a request's arrival to its last response byte (whole event streams included).",
    ["method", "route", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RETRIEVAL_SECONDS = Histogram(
    "citewise_retrieval_duration_seconds",
    "One search of a knowledge base: query embedding, dense and/or BM25 search, fusion.",
    ["mode"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
STORE_MISSING_CHUNKS = Counter(
    "citewise_store_missing_chunks_total",
    "Chunks a search's candidates named that the vector store could not return (skipped): an "
    "ingest changed the knowledge base between the index read and the store read.",
    ["kb"],
)
GENERATION_FIRST_TOKEN_SECONDS = Histogram(
    "citewise_generation_first_token_seconds",
    "From asking the answer provider to its first piece of answer text.",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
GENERATION_SECONDS = Histogram(
    "citewise_generation_duration_seconds",
    "From asking the answer provider to its last piece of answer text.",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)
GENERATED_PIECES = Counter(
    "citewise_generated_pieces_total",
    "Pieces of answer text the provider streamed (about one token each for an LLM).",
    ["provider"],
)
GENERATED_CHARACTERS = Counter(
    "citewise_generated_characters_total",
    "Characters of answer text the provider streamed.",
    ["provider"],
)
ANSWER_CACHE = Counter(
    "citewise_answer_cache_requests_total",
    "Questions by how the answer cache served them (the X-Citewise-Cache header).",
    ["result"],
)
EMBEDDING_CACHE = Counter(
    "citewise_embedding_cache_lookups_total",
    "Texts looked up in the Redis embedding cache, by kind (query, document) and result.",
    ["kind", "result"],
)
INGEST_FILES = Counter(
    "citewise_ingest_files_total",
    "Files ingests went through, by knowledge base and outcome.",
    ["kb", "outcome"],
)
INGEST_CHUNKS_EMBEDDED = Counter(
    "citewise_ingest_chunks_embedded_total",
    "Chunks ingests embedded with the model (not reused from the store or the cache).",
    ["kb"],
)
INGEST_SECONDS = Histogram(
    "citewise_ingest_duration_seconds",
    "Whole ingest runs (dry runs excluded).",
    ["kb"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
QUEUE_DEPTH = "citewise_job_queue_depth"

# Every series a ratio or a rate is computed from exists from the start, at zero: a query over
# a series that does not exist yet returns nothing rather than 0.
for _result in ("hit", "miss", "bypass"):
    ANSWER_CACHE.labels(_result)
for _kind in ("query", "document"):
    for _result in ("hit", "miss"):
        EMBEDDING_CACHE.labels(_kind, _result)


def status_class(status: int) -> str:
    """``2xx``, ``4xx``, ...: the request histogram's label (a status each would multiply it)."""
    return f"{status // 100}xx"


class QueueDepthCollector:
    """``citewise_job_queue_depth``, asked of the job queue at scrape time; nothing without one.

    ``depth`` may be a plain function or an async one. Collection runs in a worker thread
    (``render``), from where an async ``depth`` is run on the event loop.
    """

    def __init__(self, depth: DepthSource | None) -> None:
        self._depth = depth

    def collect(self) -> Iterator[Metric]:
        if self._depth is None:
            return
        try:
            value: Any = self._depth()
            if inspect.isawaitable(value):
                value = anyio.from_thread.run(_wait, value)
        except Exception as exc:
            # Debug only: the queue lives in Redis, whose failures are logged (once) by the
            # Redis client; a missing sample is what a dashboard shows meanwhile.
            log.debug("job queue depth unavailable: %s", type(exc).__name__)
            return
        yield GaugeMetricFamily(QUEUE_DEPTH, "Jobs waiting in the queue.", value=float(value))


async def _wait(awaitable: Awaitable[int]) -> int:
    return await awaitable


class _Scrape:
    """Everything one scrape reports: this process's metrics (or, in multiprocess mode, every
    process's, read from their files), then the values computed just now."""

    def __init__(self, multiprocess_dir: Path | None, depth: DepthSource | None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self._depth = depth

    def collect(self) -> Iterator[Metric]:
        if self._multiprocess_dir is not None:
            files = MultiProcessCollector(None, str(self._multiprocess_dir))  # type: ignore[no-untyped-call]
            yield from files.collect()  # type: ignore[no-untyped-call]
        else:
            yield from REGISTRY.collect()
        yield from QueueDepthCollector(self._depth).collect()


def render(
    accept: str, multiprocess_dir: Path | None, depth: DepthSource | None = None
) -> tuple[bytes, str]:
    """The body and content type answering one scrape, in the format ``accept`` asks for.

    Blocking (multiprocess mode reads files; ``depth`` may ask Redis): run it in a thread.
    """
    encoder, content_type = choose_encoder(accept)
    return encoder(_Scrape(multiprocess_dir, depth)), content_type
