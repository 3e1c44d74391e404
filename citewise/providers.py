"""Build the pluggable parts from settings. The only module that knows concrete classes."""

from __future__ import annotations

from dataclasses import dataclass

from langchain_core.embeddings import Embeddings

from citewise.answering import Answerer
from citewise.embeddings import LocalEmbeddings, model_dimension
from citewise.generators.base import Generator
from citewise.lexical import LexicalStore
from citewise.offline import prepare_offline
from citewise.retrieval import Retriever
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


def build_generator(settings: Settings, embeddings: Embeddings) -> Generator:
    """The answer provider named by ``CITEWISE_ANSWER_PROVIDER``; one line per provider."""
    match settings.answer_provider:
        case "extractive":
            from citewise.generators.extractive import ExtractiveGenerator

            return ExtractiveGenerator(embeddings)
        case "openai":
            from citewise.generators import openai

            return openai.build(settings)
        case "fake":
            from citewise.generators import fake

            return fake.build(settings)


@dataclass
class Services:
    """Everything a face (HTTP app, CLI) needs, built once from settings."""

    settings: Settings
    embeddings: LocalEmbeddings
    store: ChunkStore
    retriever: Retriever
    answerer: Answerer


def build_services(settings: Settings, generator: Generator | None = None) -> Services:
    """Wire the parts; ``generator`` overrides the configured provider (tests, embedding)."""
    embeddings = build_embeddings(settings)
    store = build_store(settings)
    retriever = Retriever(
        settings,
        store,
        embeddings,
        LexicalStore(settings.lexical_path, settings.bm25_k1, settings.bm25_b),
    )
    answerer = Answerer(settings, retriever, generator or build_generator(settings, embeddings))
    return Services(settings, embeddings, store, retriever, answerer)
