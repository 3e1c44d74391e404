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

import anyio

from citewise import metrics
from citewise.answer.answerer import (
    Answerer,
    CheckedQuestion,
    Collector,
    Question,
    trim_history,
)
from citewise.redis_client import RedisUnavailable
from citewise.search.lexical import LexicalStore
from citewise.search.lexical_sync import LexicalSync
from citewise.serving.answer_cache import AnswerCache, AnswerKey, Entry, corpus_version, serialise
from citewise.serving.conversations import Append, Conversations, checked_id, new_id, turn_json
from citewise.serving.outcomes import OutcomeLog
from citewise.shapes import (
    Answer,
    Citation,
    CitationsEvent,
    DeltaEvent,
    DoneEvent,
    Event,
    SourcesEvent,
)
from citewise.threads import run_blocking

log = logging.getLogger("citewise.serving.ask_service")

PUBLIC = "public"  # conversation owner when the service runs without API keys
HIT, MISS, BYPASS = "hit", "miss", "bypass"  # values of the X-Citewise-Cache header


@dataclass(frozen=True)
class Asked:
    """A whole answer and how the cache served it: computed, or the cached body as stored."""

    cache: str
    answer: Answer | None = None  # a computed answer
    stored: bytes | None = None  # a cached one: the /v1/ask body, ready to send

    def body(self) -> bytes:
        """The ``/v1/ask`` body (a cached one is sent as stored, not parsed)."""
        if self.stored is not None:
            return self.stored
        assert self.answer is not None
        return serialise(self.answer.model_dump(mode="json"))

    def whole(self) -> Answer:
        """The answer as a model (a cached one is parsed)."""
        if self.answer is not None:
            return self.answer
        assert self.stored is not None
        return Answer.model_validate_json(self.stored)


@dataclass
class _Plan:
    question: CheckedQuestion  # history resolved and trimmed
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
            return Asked(HIT, stored=_cached_body(served.body, plan.conversation_id))
        collector, answer = Collector(), None
        async for event in self._compute(plan, served.flight):
            answer = collector.add(event) or answer
        assert answer is not None, "an answer stream ends with done"
        return Asked(served.status, answer=answer)

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
        checked = self.answerer.check(question)  # the one check of what the caller sent
        given = conversation_id is not None
        append = None
        if self.conversations is not None and (converse or given):
            conversation_id = new_id() if conversation_id is None else checked_id(conversation_id)
            if given and not question.history:
                try:
                    history = await self.conversations.load(owner, conversation_id)
                except RedisUnavailable:
                    log.warning("conversation history unavailable (Redis); answering without it")
                else:
                    keep = self.settings.max_history_turns
                    checked = replace(checked, history=trim_history(history, keep))
            append = self.conversations.append_for(owner, conversation_id, checked.text)
        else:
            conversation_id = None
        key = None
        if self.cache is not None:
            # A cache hit retrieves nothing, so it must look at the store itself: a replica
            # that served only hits would otherwise never see a re-ingest.
            if self.sync is not None and self.sync.due(checked.kb):
                await run_blocking(self.sync.refresh, checked.kb)
            corpus = corpus_version(self.lexical, checked.kb)
            if corpus is not None:
                key = self.cache.key_for(checked, corpus)
        return _Plan(checked, conversation_id, given, append, key, owner)

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
        collector = Collector()
        try:
            async for event in self.answerer.stream(plan.question):
                answer = collector.add(event)
                if isinstance(event, DoneEvent) and answer is not None:
                    conversation_id = await self._finish(plan, flight, answer, collector.deltas)
                    event = event.model_copy(update={"conversation_id": conversation_id})
                    if self.outcomes is not None:
                        await self.outcomes.answered(
                            answer,
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
        self, plan: _Plan, flight: _Flight | None, answer: Answer, deltas: list[str]
    ) -> str | None:
        """Store the entry and the conversation turn; the conversation id to return."""
        turn = turn_json("assistant", answer.answer)
        stored = False
        try:
            if flight is not None:
                body = answer.model_dump(mode="json", exclude={"cached", "conversation_id"})
                entry = Entry(serialise(body), list(deltas), answer.answer)
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
    yield SourcesEvent(sources=data["sources"], answer_id=data["answer_id"])
    for piece in json.loads(deltas or b"[]"):
        yield DeltaEvent(text=piece)
    yield CitationsEvent(citations=[Citation.model_validate(c) for c in data["citations"]])
    yield DoneEvent(
        answer_id=data["answer_id"],
        refused=data["refused"],
        cached=True,
        conversation_id=conversation_id,
        answer=data["answer"],
    )
