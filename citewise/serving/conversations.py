"""Server-side conversations: the turns kept in Redis, so clients need not resend the history.

``prefix:conv:<owner>:<id>`` is a list of JSON turns (``{"role", "content"}``, oldest first),
trimmed to the last ``CITEWISE_MAX_HISTORY_TURNS`` messages and expiring
``CITEWISE_CONVERSATION_TTL_S`` after its last turn. ``<owner>`` is the fingerprint of the API
key that wrote it (``public`` when the service runs without keys), or the help widget and the
visitor whose page token wrote it (``widget-<id>.<visitor id>``), so a conversation id is worth
nothing with another key or to another visitor; ids are 128 random bits. The role this plays
is that of ``previous_response_id`` in OpenAI's Responses API.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from citewise.answer.generators.base import Turn
from citewise.errors import ConversationNotFound, InvalidRequest
from citewise.redis_client import RedisHandle

_ID = re.compile(r"[0-9a-f]{32}")  # fullmatch: "$" would let a trailing newline in
MAX_MESSAGE_CHARS = 20_000  # what /v1/ask accepts per history message


def new_id() -> str:
    return secrets.token_hex(16)


def checked_id(conversation_id: str) -> str:
    if not _ID.fullmatch(conversation_id):
        raise InvalidRequest("conversation_id must be the 32 hex digits an answer returned")
    return conversation_id


def turn_json(role: str, content: str) -> str:
    return json.dumps({"role": role, "content": content[:MAX_MESSAGE_CHARS]})


@dataclass(frozen=True)
class Append:
    """One question about to be added to a conversation (its answer follows it)."""

    key: str
    user_turn: str  # JSON
    ttl_ms: int
    keep: int

    def add_to(self, pipe: Any, assistant_turn: str) -> None:
        """Queue the turn pair on a Redis pipeline."""
        pipe.rpush(self.key, self.user_turn, assistant_turn)
        pipe.ltrim(self.key, -self.keep, -1)
        pipe.pexpire(self.key, self.ttl_ms)


class Conversations:
    """Load and extend conversations; Redis errors surface as ``RedisUnavailable``."""

    def __init__(self, handle: RedisHandle, ttl_s: int, keep: int) -> None:
        self._handle = handle
        self._ttl_ms = ttl_s * 1000
        self._keep = keep

    def _key(self, owner: str, conversation_id: str) -> str:
        return self._handle.key("conv", owner, conversation_id)

    async def load(self, owner: str, conversation_id: str) -> list[Turn]:
        """The kept turns, oldest first; ``ConversationNotFound`` if none are stored."""
        key = self._key(owner, conversation_id)
        raw: list[bytes | str] = await self._handle.arun(lambda r: r.lrange(key, -self._keep, -1))
        if not raw:
            raise ConversationNotFound(
                f"conversation {conversation_id!r} does not exist or has expired; "
                "omit conversation_id to start a new one"
            )
        turns = []
        for item in raw:
            data = json.loads(item)
            if data.get("role") in ("user", "assistant"):
                turns.append(Turn(data["role"], str(data.get("content", ""))))
        return turns

    def append_for(self, owner: str, conversation_id: str, question: str) -> Append:
        return Append(
            self._key(owner, conversation_id),
            turn_json("user", question),
            self._ttl_ms,
            self._keep,
        )

    async def append(self, append: Append, answer: str) -> None:
        async def write(client: aioredis.Redis) -> None:
            async with client.pipeline(transaction=False) as pipe:
                append.add_to(pipe, turn_json("assistant", answer))
                await pipe.execute()

        await self._handle.arun(write)
