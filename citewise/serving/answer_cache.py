"""Whole answers cached in Redis, under keys that a re-ingest makes unreachable at once.

Key design::

    prefix:answer:<epoch>:<kb>:<corpus>:<params>:<question>   hash: ask, deltas, turn
    ...same...:lock                                          single-flight lock (SET NX PX)
    prefix:answer-epoch, prefix:answer-epoch:<kb>            flush counters

- ``corpus`` is the knowledge base's corpus version (``corpus_version``): any ingest that
  changes its chunks changes it, so stale answers are never read again and simply expire
  (``CITEWISE_ANSWER_CACHE_TTL_S``). Nothing is scanned or deleted.
- ``params`` is a SHA-256 of everything else that shapes an answer: the provider's identity
  (name, model, prompt digest), the answer format version, the embedding model, every retrieval
  setting (mode, candidates, fusion, weights, RRF k, BM25 k1/b, de-duplication), the relevance
  floor, ``k``, the filters, the knowledge base's base URL and the conversation so far.
- ``question`` is a SHA-256 of the normalised question (``normalise``).
- ``epoch`` is read inside Redis by the lookup script: ``POST /v1/admin/cache/flush`` bumps a
  counter (all knowledge bases or one) and every older entry becomes unreachable, in O(1).

Keeping ``params`` and ``question`` apart leaves room for paraphrase ("semantic") hits without
a migration: a later index per ``(kb, corpus, params)`` can map question vectors to the
``question`` hashes of these same entries.

An entry holds the ``/v1/ask`` body as ready-to-send JSON (without ``cached`` and
``conversation_id``, which the request adds), the streamed text pieces, so a replayed stream
has the same events, and the assistant turn for conversations.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from citewise import __version__
from citewise.answer.answerer import CheckedQuestion
from citewise.redis_client import RedisHandle
from citewise.search.lexical import LexicalStore
from citewise.serving.conversations import Append
from citewise.settings import (
    AnsweringSettings,
    EmbeddingSettings,
    RedisSettings,
    RetrievalSettings,
)

# Bump when the stored entry or the answer pipeline changes in a way settings do not show.
ANSWER_FORMAT = 2
LOCK_SUFFIX = ":lock"

# One round trip for a hit: resolve the flush epochs, read the entry, and when it is found
# append the question and answer to the conversation.
# Returns {key, ask body or nil, deltas or nil, locked}.
_LOOKUP = """
local epoch = (redis.call('GET', KEYS[1]) or '0') .. '.' .. (redis.call('GET', KEYS[2]) or '0')
local key = ARGV[1] .. epoch .. ARGV[2]
local found = redis.call('HMGET', key, 'ask', 'turn', 'deltas')
if found[1] and ARGV[3] ~= '' then
  redis.call('RPUSH', ARGV[3], ARGV[4], found[2])
  redis.call('LTRIM', ARGV[3], -tonumber(ARGV[6]), -1)
  redis.call('PEXPIRE', ARGV[3], ARGV[5])
end
return {key, found[1], found[3], redis.call('EXISTS', key .. ARGV[7])}
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def corpus_version(lexical: LexicalStore, kb: str) -> str | None:
    """The knowledge base's corpus version: the generation of its published BM25 index.

    The ingest republishes that index exactly when the set of chunk ids changes (ids are
    content hashes, so any change of text, title, heading path or source changes them) and not
    on a no-op re-ingest; rebuilding a knowledge base with the same content keeps it. Deriving
    the version from it, rather than counting ingests in Redis, costs the ingest no extra
    write, cannot drift from what retrieval actually reads, and survives a Redis restart or
    flush. ``None`` means the knowledge base was never ingested: nothing is cached for it.
    """
    return lexical.current_generation(kb)


def normalise(question: str) -> str:
    """Unicode NFKC, case-folded, whitespace collapsed, trailing ``?!.`` dropped.

    "How do refunds work?" and "how do refunds  work" share an entry; anything that could
    change the meaning (words, their order, numbers) does not.
    """
    text = " ".join(unicodedata.normalize("NFKC", question).casefold().split())
    return re.sub(r"[\s?!.]+$", "", text)


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class AnswerKey:
    """The parts of an entry's key that do not depend on Redis."""

    kb: str
    corpus: str
    params: str
    question: str

    @property
    def suffix(self) -> str:
        return f":{self.kb}:{self.corpus}:{self.params}:{self.question}"


@dataclass(frozen=True)
class Lookup:
    """What Redis said about a key: its resolved name, the entry if any, whether it is locked."""

    key: str
    body: bytes | None
    deltas: bytes | None  # JSON list of the streamed text pieces
    locked: bool


@dataclass(frozen=True)
class Entry:
    """A computed answer, ready to be stored."""

    body: bytes  # the /v1/ask body without "cached" and "conversation_id"
    deltas: list[str]
    answer: str


def serialise(body: Mapping[str, Any]) -> bytes:
    """JSON exactly as Starlette's ``JSONResponse`` renders it."""
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


class AnswerCache:
    """Exact-match answer cache with single-flight; Redis errors surface as RedisUnavailable."""

    def __init__(
        self,
        handle: RedisHandle,
        settings: RedisSettings,
        provider: str,
        *,
        embedding: EmbeddingSettings,
        retrieval: RetrievalSettings,
        answering: AnsweringSettings,
    ) -> None:
        """``embedding``, ``retrieval`` and ``answering``: the settings that shape an answer,
        part of every key."""
        self._handle = handle
        self._ttl_s = settings.answer_cache_ttl_s
        self._wait_s = settings.answer_wait_s
        self._base_urls = answering.kb_base_urls
        static = {
            "format": ANSWER_FORMAT,
            "citewise": __version__,
            "provider": provider,
            "embedding": [embedding.model, embedding.max_tokens],
            "retrieval": [
                retrieval.mode,
                retrieval.candidates,
                retrieval.fusion,
                retrieval.rrf_k,
                retrieval.dense_weight,
                retrieval.bm25_weight,
                retrieval.bm25_k1,
                retrieval.bm25_b,
                retrieval.dedup_similarity,
            ],
            "answer": [answering.k, answering.min_relevance, answering.max_history_turns],
        }
        self._static = _digest(static)  # once: only the request's part is hashed per request
        self._prefix = handle.key("answer") + ":"
        self._epoch_all = handle.key("answer-epoch")
        self._lookup = handle.aio.register_script(_LOOKUP)
        self._release = handle.aio.register_script(_RELEASE)

    def key_for(self, question: CheckedQuestion, corpus: str) -> AnswerKey:
        filters = question.filters
        request = {
            "k": question.k,
            "filters": [dict(filters.equals), filters.source_prefix],
            "base_url": self._base_urls.get(question.kb, ""),
            "history": [[t.role, t.content] for t in question.history],
        }
        params = _digest([self._static, request])
        return AnswerKey(question.kb, corpus, params, _digest(normalise(question.text)))

    async def lookup(self, key: AnswerKey, append: Append | None) -> Lookup:
        """The entry if cached (appending the turn to ``append``'s conversation if so)."""
        conversation = (
            [append.key, append.user_turn, str(append.ttl_ms), str(append.keep)]
            if append
            else ["", "", "0", "0"]
        )

        async def call(client: aioredis.Redis) -> Any:
            return await self._lookup(
                keys=[self._epoch_all, f"{self._epoch_all}:{key.kb}"],
                args=[self._prefix, key.suffix, *conversation, LOCK_SUFFIX],
                client=client,
            )

        resolved, body, deltas, locked = await self._handle.arun(call)
        return Lookup(resolved.decode(), body, deltas, bool(locked))

    async def claim(self, resolved: str) -> str | None:
        """Take the single-flight lock for this entry; a token if we are to compute it."""
        token = secrets.token_hex(8)
        ttl_ms = int(self._wait_s * 1000)
        taken = await self._handle.arun(
            lambda r: r.set(resolved + LOCK_SUFFIX, token, nx=True, px=ttl_ms)
        )
        return token if taken else None

    async def wait(self, key: AnswerKey, append: Append | None) -> Lookup | None:
        """Wait for the request holding the lock to store the answer; ``None`` if it gave up
        (failed, was cancelled) or did not finish within ``CITEWISE_ANSWER_WAIT_S``."""
        deadline = time.monotonic() + self._wait_s
        delay = 0.002
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            found = await self.lookup(key, append)
            if found.body is not None:
                return found
            if not found.locked:
                return None
        return None

    async def store(
        self, resolved: str, entry: Entry, token: str | None, append: Append | None, turn: str
    ) -> None:
        """Store the entry, extend the conversation and release the lock, in one round trip."""

        async def write(client: aioredis.Redis) -> None:
            async with client.pipeline(transaction=False) as pipe:
                pipe.hset(
                    resolved,
                    mapping={"ask": entry.body, "deltas": json.dumps(entry.deltas), "turn": turn},
                )
                pipe.expire(resolved, self._ttl_s)
                if append is not None:
                    append.add_to(pipe, turn)
                if token is not None:
                    await self._release(keys=[resolved + LOCK_SUFFIX], args=[token], client=pipe)
                await pipe.execute()

        await self._handle.arun(write)

    async def release(self, resolved: str, token: str) -> None:
        await self._handle.arun(
            lambda r: self._release(keys=[resolved + LOCK_SUFFIX], args=[token], client=r)
        )


async def flush(handle: RedisHandle, kb: str | None) -> None:
    """Make every cached answer (of one knowledge base, or all) unreachable at once: bump the
    flush epoch the lookup script puts into every key. Old entries expire by their TTL."""
    counter = _epoch_counter(handle, kb)
    await handle.arun(lambda r: r.incr(counter))


def flush_now(handle: RedisHandle, kb: str | None) -> None:
    """``flush`` for callers without an event loop (deleting a knowledge base or a document
    from the CLI, or from a worker thread of the API); ``RedisUnavailable`` if it failed."""
    counter = _epoch_counter(handle, kb)
    handle.run(lambda r: r.incr(counter))


def _epoch_counter(handle: RedisHandle, kb: str | None) -> str:
    return handle.key("answer-epoch") if kb is None else handle.key("answer-epoch", kb)
