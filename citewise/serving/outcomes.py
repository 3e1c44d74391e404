"""What became of questions: the record a site owner reads to know which documents to write.

Three kinds of outcome are logged, each with the question, the knowledge base, the answer id,
who asked through what (a widget, a key, or the public) and the time:

- ``refused``: the documents did not hold the answer;
- ``low_confidence``: an answer was given, but it cites nothing or a citation does not support
  the sentence citing it;
- ``feedback``: a thumbs up or down (``rating``), with an optional comment.

They go to a Redis stream, ``prefix:outcomes``, capped at ``CITEWISE_OUTCOME_LOG_MAX`` entries
(oldest trimmed first). A stream, because this is an append-only log read by time range
(``XRANGE`` from a timestamp), shared by every replica, and bounded without a cleanup job; on
a Redis server that persists (AOF, as the compose file configures it) it is as durable as
the caches are not required to be. Repeats are kept: how often a question comes back is the
point of the report.

Feedback names an answer id, so each computed answer leaves a small record (question,
knowledge base) for ``CITEWISE_ANSWER_RECORD_TTL_S``: a thumbs-down then says which question
it was about without the client sending it again (and cannot invent one).

Questions and comments come from anyone a widget serves, and the report prints them in an
admin's terminal: terminal escape sequences and other control characters are removed from
them when they are logged and again when they are read (``printable``), so no entry can
retitle, clear or hyperlink that terminal. (The CLI escapes Rich markup when it prints.)
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from citewise.errors import AnswerNotFound, CacheUnavailable, Forbidden, InvalidRequest
from citewise.redis_client import RedisHandle, RedisUnavailable
from citewise.settings import OutcomeSettings
from citewise.shapes import Answer

log = logging.getLogger("citewise.serving.outcomes")

Kind = Literal["refused", "low_confidence", "feedback"]
Rating = Literal["up", "down"]
MAX_COMMENT_CHARS = 1000

# Whole escape sequences first (their parameters would otherwise survive as text), then any
# C0/C1 control character left but tab and newline: CSI (ESC [ or 0x9b ... final byte), OSC
# (ESC ] or 0x9d ... BEL or ST, or the rest of the text when unterminated), DCS/SOS/PM/APC
# strings, and the two- or three-byte ESC sequences.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` without terminal escape sequences or control characters (tab and newline
    stay): safe to print in a terminal. Rich markup is left to the printer to escape."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    kb: str
    question: str
    answer_id: str
    via: str
    at: float  # seconds since the epoch
    rating: str = ""
    comment: str = ""

    @property
    def unwanted(self) -> bool:
        """What the report is about: anything but a thumbs up."""
        return not (self.kind == "feedback" and self.rating == "up")


def judge(answer: Answer) -> Kind | None:
    """``refused``, ``low_confidence`` or ``None`` for an answer."""
    if answer.refused:
        return "refused"
    if not answer.citations or any(not c.supported for c in answer.citations):
        return "low_confidence"
    return None


def judge_cached(body: bytes) -> Kind | None:
    """``judge`` for a stored answer body, without parsing it on the cache-hit path: the body
    is compact JSON (``answer_cache.serialise``), so these byte patterns are exact."""
    if b'"refused":true' in body:
        return "refused"
    if b'"citations":[]' in body or b'"supported":false' in body:
        return "low_confidence"
    return None


class OutcomeLog:
    """Writes outcomes and answer records; Redis failures lose the record, never the answer."""

    def __init__(self, redis: RedisHandle, settings: OutcomeSettings) -> None:
        self._redis = redis
        self._record_ttl_s = settings.answer_record_ttl_s
        self._max = settings.log_max
        self._stream = redis.key("outcomes")

    def _record_key(self, answer_id: str) -> str:
        return self._redis.key("answer-record", answer_id)

    async def answered(
        self, answer: Answer, question: str, kb: str, via: str, *, computed: bool
    ) -> None:
        """Log an answer that went out: its record (computed ones) and its outcome, if any."""
        kind = judge(answer)
        answer_id = answer.answer_id
        record = json.dumps({"question": question, "kb": kb})
        fields = self._fields(kind, kb, question, answer_id, via) if kind else None

        async def write(client: Any) -> None:
            async with client.pipeline(transaction=False) as pipe:
                if computed and answer_id:
                    pipe.set(self._record_key(answer_id), record, ex=self._record_ttl_s)
                if fields is not None:
                    pipe.xadd(self._stream, fields, maxlen=self._max, approximate=True)
                await pipe.execute()

        if not (computed and answer_id) and fields is None:
            return
        try:
            await self._redis.arun(write)
        except RedisUnavailable:
            log.warning("outcome of answer %s not recorded: Redis unavailable", answer_id)

    async def cached_answer(self, body: bytes, question: str, kb: str, via: str) -> None:
        """Log the outcome of an answer served from the cache (its record already exists)."""
        kind = judge_cached(body)
        if kind is None:
            return
        answer_id = json.loads(body).get("answer_id", "")
        fields = self._fields(kind, kb, question, answer_id, via)
        try:
            await self._redis.arun(
                lambda r: r.xadd(self._stream, fields, maxlen=self._max, approximate=True)
            )
        except RedisUnavailable:
            log.warning("outcome of a cached answer not recorded: Redis unavailable")

    async def feedback(
        self, answer_id: str, rating: Rating, comment: str, via: str, kb: str | None = None
    ) -> Outcome:
        """Log a thumbs up or down on an answer given in the last record TTL; ``kb``: the
        caller is bound to that knowledge base (a widget) and may judge its answers only."""
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidRequest(f"a comment is at most {MAX_COMMENT_CHARS} characters")
        try:
            raw = await self._redis.arun(lambda r: r.get(self._record_key(answer_id)))
            if raw is None:
                raise AnswerNotFound(
                    "no answer with that answer_id was given recently; feedback is taken for "
                    "answers up to a few days old"
                )
            record = json.loads(raw)
            if kb is not None and record["kb"] != kb:
                raise Forbidden(
                    f"this widget takes feedback on answers from knowledge base {kb!r} only"
                )
            fields = self._fields(
                "feedback", record["kb"], record["question"], answer_id, via, rating, comment
            )
            await self._redis.arun(
                lambda r: r.xadd(self._stream, fields, maxlen=self._max, approximate=True)
            )
        except RedisUnavailable as exc:
            raise CacheUnavailable("feedback cannot be recorded right now; try again") from exc
        return _outcome(fields)

    def read(self, *, kb: str | None = None, since: float | None = None) -> list[Outcome]:
        """Logged outcomes, oldest first, from ``since`` (epoch seconds) on, for ``kb``."""
        start = f"{int(since * 1000)}-0" if since else "-"
        outcomes: list[Outcome] = []
        try:
            while True:
                page: list[Any] = self._redis.run(
                    lambda r, s=start: r.xrange(self._stream, min=s, max="+", count=1000)  # type: ignore[misc]
                )
                for _entry_id, fields in page:
                    outcome = _outcome({_text(k): _text(v) for k, v in fields.items()})
                    if kb is None or outcome.kb == kb:
                        outcomes.append(outcome)
                if len(page) < 1000:
                    return outcomes
                start = "(" + _text(page[-1][0])  # exclusive: after the last one read
        except RedisUnavailable as exc:
            raise CacheUnavailable("the outcome log is in Redis, which cannot be reached") from exc

    @staticmethod
    def _fields(
        kind: Kind,
        kb: str,
        question: str,
        answer_id: str,
        via: str,
        rating: str = "",
        comment: str = "",
    ) -> dict[Any, Any]:  # redis-py's field type; all str here
        return {
            "kind": kind,
            "kb": kb,
            "question": printable(question),
            "answer_id": answer_id,
            "via": via,
            "at": f"{time.time():.3f}",
            "rating": rating,
            "comment": printable(comment),
        }


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _outcome(fields: Mapping[Any, Any]) -> Outcome:
    return Outcome(
        kind=fields["kind"],
        kb=fields["kb"],
        question=printable(fields["question"]),  # again: entries logged before it was done
        answer_id=fields["answer_id"],
        via=printable(fields["via"]),
        at=float(fields["at"]),
        rating=fields.get("rating", ""),
        comment=printable(fields.get("comment", "")),
    )
