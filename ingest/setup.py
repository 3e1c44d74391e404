"""The one place an ingest is wired: Redis, the cached embedding model, the store, the pipeline.

The CLI (``citewise ingest``) and the worker's job body open a pipeline the same way; closing
it releases the store's connections and Redis in the right order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from citewise.redis_client import connect
from citewise.settings import Settings
from citewise.wiring import build_embeddings, build_store, cached
from ingest.pipeline import IngestPipeline


@contextmanager
def open_pipeline(settings: Settings, *, dry_run: bool = False) -> Iterator[IngestPipeline]:
    """A pipeline over the configured store and model, embeddings cached in Redis when it
    answers. A dry run writes nothing: it uses a Redis it is given but starts no embedded one,
    and creates no store."""
    redis = connect(settings.redis, settings.redis_path, start_embedded=not dry_run)
    try:
        embeddings = cached(settings, build_embeddings(settings), redis)
        store = build_store(settings, create=not dry_run)
        try:
            yield IngestPipeline(settings, store, embeddings)
        finally:
            store.close()
    finally:
        if redis is not None:
            redis.close()
