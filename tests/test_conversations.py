"""Server-side conversations: follow-ups by conversation_id, bounds, expiry and ownership."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.settings import Settings
from tests.answer_helpers import sse_events

INVITE = "How do I invite people to my company?"
HANDBOOK = "account/admin-handbook.docx"
QUERY_A = "query-key-a-0123456789"
QUERY_B = "query-key-b-0123456789"


@pytest.fixture
def settings(home: Path, cache_dir: Path, redis_url: str, redis_prefix: str) -> Settings:
    return Settings(
        home=home,
        cache_dir=cache_dir,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        max_history_turns=4,
        conversation_ttl_s=120,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def ask(client: TestClient, question: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/ask", json={"question": question, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_follow_up_needs_only_the_conversation_id(client: TestClient) -> None:
    first = ask(client, INVITE)
    conversation = first["conversation_id"]
    assert conversation and len(conversation) == 32

    alone = ask(client, "how long is it valid?")
    assert "7 days" not in alone["answer"]  # "it" alone is not about invitations

    follow_up = ask(client, "how long is it valid?", conversation_id=conversation)
    assert "7 days" in follow_up["answer"]
    assert {c["source"] for c in follow_up["citations"]} == {HANDBOOK}
    assert follow_up["conversation_id"] == conversation


def test_the_stream_carries_the_conversation_too(client: TestClient) -> None:
    events = sse_events(client.post("/v1/ask/stream", json={"question": INVITE}).text)
    conversation = events[-1][1]["conversation_id"]
    assert events[-1][0] == "done" and conversation
    response = client.post(
        "/v1/ask/stream",
        json={"question": "how long is it valid?", "conversation_id": conversation},
    )
    follow_up = sse_events(response.text)
    assert "7 days" in "".join(d["text"] for n, d in follow_up if n == "delta")
    assert follow_up[-1][1]["conversation_id"] == conversation


def test_explicit_history_wins_over_the_stored_one(client: TestClient) -> None:
    conversation = ask(client, "What is the hotel limit per night?")["conversation_id"]
    history = [{"role": "user", "content": INVITE}]
    body = ask(client, "how long is it valid?", conversation_id=conversation, history=history)
    assert "7 days" in body["answer"]


def test_cached_answers_extend_the_conversation(
    client: TestClient, redis_url: str, redis_prefix: str
) -> None:
    ask(client, INVITE)  # now cached
    conversation = ask(client, INVITE)["conversation_id"]  # a hit, in a new conversation
    [key] = redis.Redis.from_url(redis_url).keys(f"{redis_prefix}:conv:*:{conversation}")
    assert key.decode() == f"{redis_prefix}:conv:public:{conversation}"
    follow_up = ask(client, "how long is it valid?", conversation_id=conversation)
    assert "7 days" in follow_up["answer"]


def test_conversations_are_bounded_and_expire(
    client: TestClient, redis_url: str, redis_prefix: str
) -> None:
    conversation = ask(client, INVITE)["conversation_id"]
    for question in ("how long is it valid?", "how many at once?", "can I resend it?"):
        ask(client, question, conversation_id=conversation)
    store = redis.Redis.from_url(redis_url)
    key = f"{redis_prefix}:conv:public:{conversation}"
    assert store.llen(key) == 4  # CITEWISE_MAX_HISTORY_TURNS messages, the latest
    assert b"can I resend it?" in store.lindex(key, -2)
    assert 0 < store.pttl(key) <= 120_000


def test_unknown_and_malformed_conversation_ids(client: TestClient) -> None:
    missing = client.post("/v1/ask", json={"question": INVITE, "conversation_id": "0" * 32})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "conversation_not_found"
    malformed = client.post("/v1/ask", json={"question": INVITE, "conversation_id": "../x"})
    assert malformed.status_code == 422


def test_a_conversation_belongs_to_the_key_that_started_it(settings: Settings) -> None:
    keyed = Settings(
        home=settings.core.home,
        cache_dir=settings.core.cache_dir,
        redis_url=settings.redis.url,
        redis_prefix=settings.redis.prefix,
        query_keys=f"{QUERY_A},{QUERY_B}",
    )
    with TestClient(create_app(keyed)) as client:
        a = {"Authorization": f"Bearer {QUERY_A}"}
        b = {"X-API-Key": QUERY_B}
        response = client.post("/v1/ask", json={"question": INVITE}, headers=a)
        conversation = response.json()["conversation_id"]
        follow = {"question": "how long is it valid?", "conversation_id": conversation}
        assert client.post("/v1/ask", json=follow, headers=a).status_code == 200
        assert client.post("/v1/ask", json=follow, headers=b).status_code == 404
