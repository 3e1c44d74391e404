"""Build the pluggable parts from settings. The only module that knows concrete classes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from langchain_core.embeddings import Embeddings

from citewise.answer.answerer import Answerer
from citewise.answer.generators.base import Generator
from citewise.job_queue import JobQueue
from citewise.offline import prepare_offline
from citewise.redis_client import RedisHandle, connect
from citewise.search.embedding_cache import CachedEmbeddings
from citewise.search.embeddings import LocalEmbeddings, model_dimension
from citewise.search.lexical import LexicalStore
from citewise.search.lexical_sync import LexicalSync
from citewise.search.retrieval import Retriever
from citewise.search.store import ChunkStore, connect_server, open_client
from citewise.serving.access import KeyRing
from citewise.serving.answer_cache import AnswerCache
from citewise.serving.ask_service import AskService
from citewise.serving.conversations import Conversations
from citewise.serving.outcomes import OutcomeLog
from citewise.serving.rate_limits import Limiter
from citewise.serving.user_tokens import UserTokens
from citewise.serving.widgets import Widgets
from citewise.settings import Settings


def build_embeddings(settings: Settings, *, for_queries: bool = False) -> LocalEmbeddings:
    """The local embedding model named by ``CITEWISE_EMBEDDING_MODEL`` (loaded lazily).

    ``for_queries`` tunes it for one short text at a time (search, answers) rather than for
    batches beside a parser (ingest).
    """
    prepare_offline(settings.core.cache_dir)
    return LocalEmbeddings(
        settings.embedding.model,
        batch_size=settings.embedding.batch_size,
        threads=settings.embedding.threads,
        max_tokens=settings.embedding.max_tokens,
        spin=for_queries,
        device=settings.embedding.device,
    )


def cached(
    settings: Settings, model: LocalEmbeddings, redis: RedisHandle | None
) -> LocalEmbeddings | CachedEmbeddings:
    """``model`` behind the Redis embedding cache, when there is a Redis and it is wanted."""
    if redis is None or not settings.redis.embedding_cache:
        return model
    return CachedEmbeddings(model, redis, settings.redis.embedding_cache_ttl_s)


def build_store(settings: Settings, *, create: bool = True) -> ChunkStore:
    """The Chroma store bound to the configured embedding model.

    With ``create`` off, a missing store is not created (dry runs write nothing).
    """
    prepare_offline(settings.core.cache_dir)
    dimension = model_dimension(settings.embedding.model)
    if settings.chroma.url is not None:
        # Connected on first use: a server that is down now must not stop a service starting.
        return ChunkStore(
            None,
            settings.embedding.model,
            dimension,
            connect=lambda: connect_server(settings.chroma),
            where=settings.chroma.url,
        )
    client = open_client(settings.chroma, settings.chroma_path, create=create)
    return ChunkStore(client, settings.embedding.model, dimension)


def build_lexical(settings: Settings) -> LexicalStore:
    """The BM25 indexes under ``CITEWISE_HOME``, with the configured k1 and b."""
    return LexicalStore(
        settings.lexical_path, settings.retrieval.bm25_k1, settings.retrieval.bm25_b
    )


def build_generator(settings: Settings, embeddings: Embeddings) -> Generator:
    """The answer provider named by ``CITEWISE_ANSWER_PROVIDER``; one line per provider."""
    match settings.answering.provider:
        case "extractive":
            from citewise.answer.generators.extractive import ExtractiveGenerator

            return ExtractiveGenerator(embeddings)
        case "openai":
            from citewise.answer.generators import openai

            return openai.build(settings.llm)
        case "anthropic":
            from citewise.answer.generators import anthropic

            return anthropic.build(settings.llm)
        case "gemini":
            from citewise.answer.generators import gemini

            return gemini.build(settings.llm)
        case "fake":
            from citewise.answer.generators import fake

            return fake.build(settings.llm)


@dataclass
class Services:
    """Everything a face (HTTP app, CLI) needs, built once from settings."""

    settings: Settings
    model: LocalEmbeddings  # the model itself (loading, readiness)
    embeddings: Embeddings  # the model behind the Redis cache, when there is one
    store: ChunkStore
    retriever: Retriever
    answerer: Answerer
    redis: RedisHandle | None
    asking: AskService
    keys: KeyRing
    limiter: Limiter
    widgets: Widgets
    outcomes: OutcomeLog | None
    jobs: JobQueue | None  # ingest jobs (RQ over the same Redis); None without Redis
    user_tokens: UserTokens | None = None  # end users' JWTs, when the deployment takes them

    def close(self) -> None:
        """Release Redis and Chroma server connections (used without an event loop)."""
        if isinstance(self.embeddings, CachedEmbeddings):
            self.embeddings.close()  # its last query vectors reach Redis first
        if self.redis is not None:
            self.redis.close()
        self.store.close()

    async def aclose(self) -> None:
        """``close`` from inside the event loop that used the services (the app's lifespan, an
        async CLI command): the LLM client and the async Redis connections belong to it."""
        close = getattr(self.answerer.generator, "aclose", None)
        if close is not None:  # e.g. the LLM client's connections
            await close()
        if self.redis is not None:
            await self.redis.aio.aclose()
        await asyncio.to_thread(self.close)  # the embedded Redis stops after its save


def build_services(settings: Settings, generator: Generator | None = None) -> Services:
    """Wire the parts; ``generator`` overrides the configured provider (tests, embedding)."""
    redis = connect(settings.redis, settings.redis_path)
    model = build_embeddings(settings, for_queries=True)
    embeddings = cached(settings, model, redis)
    store = build_store(settings)
    lexical = build_lexical(settings)
    # On one machine the ingest's index is this process's index; with a Chroma server the
    # ingest may be elsewhere, and each process follows the generation it recorded there.
    sync = None
    if settings.chroma.server:
        sync = LexicalSync(lexical, store, settings.chroma.bm25_sync_s)
    retriever = Retriever(settings.retrieval, store, embeddings, lexical, sync)
    generator = generator or build_generator(settings, embeddings)
    answerer = Answerer(settings.answering, retriever, generator)
    identity = getattr(generator, "cache_identity", None)
    answers = None
    if redis is not None and settings.redis.answer_cache and identity:
        answers = AnswerCache(
            redis,
            settings.redis,
            str(identity),
            embedding=settings.embedding,
            retrieval=settings.retrieval,
            answering=settings.answering,
        )
    conversations = None
    if redis is not None and settings.answering.max_history_turns > 0:
        conversations = Conversations(
            redis, settings.redis.conversation_ttl_s, settings.answering.max_history_turns
        )
    outcomes = OutcomeLog(redis, settings.outcomes) if redis is not None else None
    asking = AskService(answerer, lexical, answers, conversations, outcomes, sync)
    access = settings.access
    keys = KeyRing(access.admin_keys, access.query_keys, users=access.user_tokens)
    return Services(
        settings,
        model,
        embeddings,
        store,
        retriever,
        answerer,
        redis,
        asking,
        keys,
        Limiter(redis, settings.rate_limits),
        Widgets(settings.widget, settings.widget_secret_path, redis),
        outcomes,
        JobQueue(redis, settings.ingest) if redis is not None else None,
        UserTokens(access) if access.user_tokens else None,
    )
