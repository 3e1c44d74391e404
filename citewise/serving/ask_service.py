"""A question as the service handles it: conversation, answer cache, single flight, then answer.

``Answerer`` computes answers; this wraps it for the HTTP faces:

1. check the question (a bad one fails before anything else), resolve the conversation (stored
   turns, unless the request brings its own ``history``, which wins);
2. look the answer up (``citewise.serving.answer_cache``): a hit is sent as stored, with
   ``cached: true``, without embedding or retrieving anything;
3. on a miss take the entry's lock and compute; an identical question arriving meanwhile waits
   for that answer instead of computing it again (single flight);
4. store the answer and the conversation turn in the same round trip, then finish;
5. log the outcome (refused, low confidence) and, for a computed answer, the record feedback
   will point at (``citewise.serving.outcomes``).

Whenever Redis fails, steps 2-4 are skipped (header ``X-Citewise-Cache: bypass``) and the
answer is computed as if there were no cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import anyio

from citewise import metrics
from citewise.answer.answerer import (
    Answer,
    Answerer,
    CitationsEvent,
    DeltaEvent,
    DoneEvent,
    Event,
    Question,
    SourcesEvent,
)
from citewise.answer.citations import Citation
from citewise.knowledge_base import validate_kb
from citewise.redis_client import RedisUnavailable
from citewise.search.lexical import LexicalStore
from citewise.search.lexical_sync import LexicalSync
from citewise.search.retrieval import Filters
from citewise.serving.answer_cache import AnswerCache, AnswerKey, Entry, corpus_version, serialise
from citewise.serving.conversations import Append, Conversations, checked_id, new_id, turn_json
from citewise.serving.outcomes import OutcomeLog
from citewise.threads import run_blocking

log = logging.getLogger("citewise.serving.ask_service")

PUBLIC = "public"  # conversation owner when the service runs without API keys
HIT, MISS, BYPASS = "hit", "miss", "bypass"  # values of the X-Citewise-Cache header


@dataclass(frozen=True)
class Asked:
    """A whole answer: the ``/v1/ask`` body, ready to send, and how the cache served it."""

    cache: str
    body: bytes

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class _Plan:
    question: Question  # history resolved and trimmed
    conversation_id: str | None
    given: bool  # the caller named the conversation
    append: Append | None
    key: AnswerKey | None
    owner: str


@dataclass
class _Flight:
    key: str  # the entry's resolved Redis key
    token: str | None  # our single-flight lock, if we hold it
    finished: bool = False


@dataclass(frozen=True)
class _Served:
    status: str
    body: bytes | None = None  # the cached entry, on a hit
    deltas: bytes | None = None
    flight: _Flight | None = None


class AskService:
    """Serves questions; one per process. ``cache`` and ``conversations`` are optional."""

    def __init__(
        self,
        answerer: Answerer,
        lexical: LexicalStore,
        cache: AnswerCache | None,
        conversations: Conversations | None,
        outcomes: OutcomeLog | None = None,
        sync: LexicalSync | None = None,
    ) -> None:
        self.answerer = answerer
        self.settings = answerer.settings
        self.lexical = lexical
        self.sync = sync
        self.cache = cache
        self.conversations = conversations
        self.outcomes = outcomes

    async def ask(
        self,
        question: Question,
        conversation_id: str | None = None,
        owner: str = PUBLIC,
        *,
        converse: bool = True,
    ) -> Asked:
        """The whole answer. On a hit the stored JSON is sent as it is, plus two fields."""
        plan = await self._plan(question, conversation_id, owner, converse)
        served = await self._serve(plan)
        if served.body is not None:
            await self._note_cached(plan, served.body)
            return Asked(HIT, _cached_body(served.body, plan.conversation_id))
        answer, parts = Answer(answer_id="", answer=""), list[str]()
        async for event in self._compute(plan, served.flight):
            answer.add(event, parts)
        return Asked(served.status, serialise(answer.to_dict()))

    async def stream(
        self,
        question: Question,
        conversation_id: str | None = None,
        owner: str = PUBLIC,
        *,
        converse: bool = True,
    ) -> tuple[str, AsyncIterator[Event]]:
        """How the cache serves it, and the events: replayed on a hit, live otherwise."""
        plan = await self._plan(question, conversation_id, owner, converse)
        served = await self._serve(plan)
        if served.body is not None:
            await self._note_cached(plan, served.body)
            return HIT, _replay(served.body, served.deltas, plan.conversation_id)
        return served.status, self._compute(plan, served.flight)

    async def _plan(
        self, question: Question, conversation_id: str | None, owner: str, converse: bool
    ) -> _Plan:
        text = self.answerer.check_question(question.text)
        validate_kb(question.kb)
        Filters.parse(question.filters)
        history = list(question.history)
        given = conversation_id is not None
        append = None
        if self.conversations is not None and (converse or given):
            conversation_id = new_id() if conversation_id is None else checked_id(conversation_id)
            if given and not history:
                try:
                    history = await self.conversations.load(owner, conversation_id)
                except RedisUnavailable:
                    log.warning("conversation history unavailable (Redis); answering without it")
            append = self.conversations.append_for(owner, conversation_id, text)
        else:
            conversation_id = None
        keep = self.settings.max_history_turns
        kept = history[-keep:] if keep else []  # [-0:] would keep them all
        question = replace(question, text=text, history=kept)
        key = None
        if self.cache is not None:
            # A cache hit retrieves nothing, so it must look at the store itself: a replica
            # that served only hits would otherwise never see a re-ingest.
            if self.sync is not None and self.sync.due(question.kb):
                await run_blocking(self.sync.refresh, question.kb)
            corpus = corpus_version(self.lexical, question.kb)
            if corpus is not None:
                key = self.cache.key_for(
                    question.kb, corpus, text, kept, question.k, question.filters
                )
        return _Plan(question, conversation_id, given, append, key, owner)

    async def _serve(self, plan: _Plan) -> _Served:
        """A cached entry (possibly after waiting for another request), or what to compute."""
        served = await self._look_up(plan)
        metrics.ANSWER_CACHE.labels(served.status).inc()
        return served

    async def _look_up(self, plan: _Plan) -> _Served:
        if self.cache is None or plan.key is None:
            return _Served(BYPASS)
        try:
            found = await self.cache.lookup(plan.key, plan.append)
            if found.body is not None:
                return _Served(HIT, found.body, found.deltas)
            token = await self.cache.claim(found.key)
            if token is None:  # an identical question is being answered: wait for it
                done = await self.cache.wait(plan.key, plan.append)
                if done is not None and done.body is not None:
                    return _Served(HIT, done.body, done.deltas)
                token = await self.cache.claim(found.key)  # it gave up or took too long
            return _Served(MISS, flight=_Flight(found.key, token))
        except RedisUnavailable:
            return _Served(BYPASS)

    async def _compute(self, plan: _Plan, flight: _Flight | None) -> AsyncIterator[Event]:
        """The live answer; stores it (and the turn) before the ``done`` event goes out."""
        answer, parts = Answer(answer_id="", answer=""), list[str]()
        try:
            async for event in self.answerer.stream(plan.question):
                answer.add(event, parts)
                if isinstance(event, DoneEvent):
                    conversation_id = await self._finish(plan, flight, answer, parts)
                    event = replace(event, conversation_id=conversation_id)
                    if self.outcomes is not None:
                        await self.outcomes.answered(
                            answer.to_dict(),
                            plan.question.text,
                            plan.question.kb,
                            plan.owner,
                            computed=True,
                        )
                yield event
        finally:
            if flight is not None and flight.token is not None and not flight.finished:
                # Shielded: this runs when the client went away too. If Redis fails, the lock
                # expires by itself.
                with anyio.CancelScope(shield=True), contextlib.suppress(RedisUnavailable):
                    await self._cache().release(flight.key, flight.token)

    async def _finish(
        self, plan: _Plan, flight: _Flight | None, answer: Answer, parts: list[str]
    ) -> str | None:
        """Store the entry and the conversation turn; the conversation id to return."""
        turn = turn_json("assistant", answer.answer)
        stored = False
        try:
            if flight is not None:
                body = answer.to_dict()
                del body["cached"], body["conversation_id"]
                entry = Entry(serialise(body), list(parts), answer.answer)
                await self._cache().store(flight.key, entry, flight.token, plan.append, turn)
                flight.finished = True
                stored = True
            elif plan.append is not None and self.conversations is not None:
                await self.conversations.append(plan.append, answer.answer)
                stored = True
        except RedisUnavailable:
            log.warning("answer not cached and conversation turn not saved: Redis unavailable")
        # A new conversation that could not be saved does not exist: do not hand out its id.
        return plan.conversation_id if (stored or plan.given) else None

    async def _note_cached(self, plan: _Plan, body: bytes) -> None:
        if self.outcomes is not None:
            await self.outcomes.cached_answer(
                body, plan.question.text, plan.question.kb, plan.owner
            )

    def _cache(self) -> AnswerCache:
        assert self.cache is not None
        return self.cache


def _cached_body(body: bytes, conversation_id: str | None) -> bytes:
    """The stored body (a JSON object) with ``cached`` and ``conversation_id`` appended."""
    tail = json.dumps(conversation_id).encode()
    return body[:-1] + b',"cached":true,"conversation_id":' + tail + b"}"


async def _replay(
    body: bytes, deltas: bytes | None, conversation_id: str | None
) -> AsyncIterator[Event]:
    """A cached answer as the same events a live one sends."""
    data = json.loads(body)
    yield SourcesEvent(data["sources"], data["answer_id"])
    for piece in json.loads(deltas or b"[]"):
        yield DeltaEvent(piece)
    yield CitationsEvent([Citation(**c) for c in data["citations"]])
    yield DoneEvent(data["answer_id"], data["refused"], True, conversation_id)
