"""Build the pluggable parts from settings. The only module that knows concrete classes."""

from __future__ import annotations

from citewise.embeddings import LocalEmbeddings, model_dimension
from citewise.offline import prepare_offline
from citewise.settings import Settings
from citewise.store import ChunkStore, open_client


def build_embeddings(settings: Settings) -> LocalEmbeddings:
    """The local embedding model named by ``CITEWISE_EMBEDDING_MODEL`` (loaded lazily)."""
    prepare_offline(settings.cache_dir)
    return LocalEmbeddings(
        settings.embedding_model,
        batch_size=settings.embedding_batch_size,
        threads=settings.embedding_threads,
        max_tokens=settings.embedding_max_tokens,
    )


def build_store(settings: Settings, *, create: bool = True) -> ChunkStore:
    """The Chroma store bound to the configured embedding model.

    With ``create`` off, a missing store is not created (dry runs write nothing).
    """
    prepare_offline(settings.cache_dir)
    client = open_client(settings, create=create)
    return ChunkStore(client, settings.embedding_model, model_dimension(settings.embedding_model))
