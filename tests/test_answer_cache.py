"""The answer cache against a real Redis: hits and misses, replayed streams, invalidation by
re-ingest, flushes, and identical questions computed once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.answer.generators.base import Turn, condense_heuristic
from citewise.search.embeddings import LocalEmbeddings
from citewise.search.store import Hit
from citewise.serving.answer_cache import normalise
from citewise.settings import Settings
from tests.answer_helpers import (
    PARROT_DOC,
    ingest_into,
    serve,
    sse_events,
)
from tests.redis_helpers import wait_for_commands

INVITATION = "How long is an invitation valid?"
PARROT = "What is the office parrot called?"
CACHE = "x-citewise-cache"


@pytest.fixture
def settings(home: Path, cache_dir: Path, redis_url: str, redis_prefix: str) -> Settings:
    return Settings(home=home, cache_dir=cache_dir, redis_url=redis_url, redis_prefix=redis_prefix)


@contextmanager
def client_for(settings: Settings, generator: Any = None) -> Iterator[TestClient]:
    with TestClient(create_app(settings, generator=generator)) as client:
        yield client


def ask(client: TestClient, question: str, **body: Any) -> tuple[str, dict[str, Any]]:
    response = client.post("/v1/ask", json={"question": question, **body})
    assert response.status_code == 200, response.text
    return response.headers[CACHE], response.json()


def without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}


def test_a_repeated_question_is_answered_from_the_cache(settings: Settings) -> None:
    with client_for(settings) as client:
        first_status, first = ask(client, INVITATION)
        second_status, second = ask(client, INVITATION)
    assert (first_status, first["cached"]) == ("miss", False)
    assert (second_status, second["cached"]) == ("hit", True)
    assert "7 days" in second["answer"]
    # The same answer, id included; only the flag and the (new) conversation differ.
    assert without(second, "cached", "conversation_id") == without(
        first, "cached", "conversation_id"
    )
    assert list(second) == list(first)  # same fields, same order
    assert second["conversation_id"] and second["conversation_id"] != first["conversation_id"]


def test_a_cached_stream_replays_the_same_events(settings: Settings) -> None:
    with client_for(settings) as client:
        live = client.post("/v1/ask/stream", json={"question": INVITATION})
        replay = client.post("/v1/ask/stream", json={"question": INVITATION})
        status, whole = ask(client, INVITATION)  # the stream stored the answer too
    assert live.headers[CACHE] == "miss" and replay.headers[CACHE] == "hit" and status == "hit"
    live_events, replayed = sse_events(live.text), sse_events(replay.text)
    assert [n for n, _ in replayed] == [n for n, _ in live_events]
    assert replayed[:-1] == live_events[:-1]  # sources, every delta, citations
    live_done, replay_done = live_events[-1][1], replayed[-1][1]
    assert live_done["cached"] is False and replay_done["cached"] is True
    assert without(replay_done, "cached", "conversation_id") == without(
        live_done, "cached", "conversation_id"
    )
    assert whole["answer_id"] == live_done["answer_id"]
    assert whole["answer"] == "".join(d["text"] for n, d in live_events if n == "delta").strip()


def test_the_openai_endpoint_shares_the_cache(settings: Settings) -> None:
    chat = {"model": "default", "messages": [{"role": "user", "content": INVITATION}]}
    with client_for(settings) as client:
        status, body = ask(client, INVITATION)
        completion = client.post("/v1/chat/completions", json=chat)
        streamed = client.post("/v1/chat/completions", json=chat | {"stream": True})
    assert status == "miss"
    assert completion.headers[CACHE] == "hit" and streamed.headers[CACHE] == "hit"
    data = completion.json()
    assert data["id"] == f"chatcmpl-{body['answer_id']}"
    assert data["choices"][0]["message"]["content"] == body["answer"]
    assert data["citations"] == body["citations"]
    chunks = [d for _, d in sse_events(streamed.text)]
    assert chunks[-1] == "[DONE]"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text.strip() == body["answer"]


def test_the_key_covers_the_normalised_question_and_every_parameter(settings: Settings) -> None:
    assert normalise("  How LONG is an   invitation valid?? ") == normalise(INVITATION)
    with client_for(settings) as client:
        assert ask(client, INVITATION)[0] == "miss"
        assert ask(client, "how long is an invitation valid")[0] == "hit"
        assert ask(client, "How long is an invitation valid for?")[0] == "miss"
        assert ask(client, INVITATION, k=2)[0] == "miss"
        assert ask(client, INVITATION, filters={"source_prefix": "account/"})[0] == "miss"
        history = [{"role": "user", "content": "How do I invite people?"}]
        assert ask(client, INVITATION, history=history)[0] == "miss"
        assert ask(client, INVITATION, history=history)[0] == "hit"
        assert ask(client, INVITATION, kb="parrots")[0] == "miss"
    other = settings.replace(min_relevance=0.4)  # a setting that shapes answers
    with client_for(other) as client:
        assert ask(client, INVITATION)[0] == "miss"
        assert ask(client, INVITATION)[0] == "hit"


def test_errors_are_not_cached(settings: Settings, redis_url: str, redis_prefix: str) -> None:
    with client_for(settings) as client:
        for _ in range(2):
            response = client.post("/v1/ask", json={"question": "x?", "kb": "missing"})
            assert response.status_code == 404
            response = client.post("/v1/ask", json={"question": "x?", "filters": {"colour": 1}})
            assert response.status_code == 400
    stored = redis.Redis.from_url(redis_url).keys(f"{redis_prefix}:answer:*")
    assert stored == []  # no entry, and no lock left behind


def test_an_ingest_that_changes_the_corpus_invalidates_a_no_op_one_does_not(
    tmp_path: Path,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    document = corpus / "office-pets.md"
    document.write_text(PARROT_DOC, encoding="utf-8")
    settings = Settings(
        home=tmp_path / "home", cache_dir=cache_dir, redis_url=redis_url, redis_prefix=redis_prefix
    )
    ingest_into(settings, embeddings, corpus)
    with client_for(settings) as client:
        status, body = ask(client, PARROT)
        assert status == "miss" and "Captain Biscuit" in body["answer"]
        assert ask(client, PARROT)[0] == "hit"

        ingest_into(settings, embeddings, corpus)  # nothing changed
        status, again = ask(client, PARROT)
        assert status == "hit" and again["answer_id"] == body["answer_id"]

        document.write_text(PARROT_DOC.replace("Captain Biscuit", "Admiral Crumb"), "utf-8")
        ingest_into(settings, embeddings, corpus)
        status, renamed = ask(client, PARROT)
        assert status == "miss" and "Admiral Crumb" in renamed["answer"]
        assert "Captain Biscuit" not in renamed["answer"]
        assert ask(client, PARROT)[0] == "hit"


def test_an_admin_flush_retires_answers_of_one_or_all_knowledge_bases(
    settings: Settings,
) -> None:
    with client_for(settings) as client:
        ask(client, INVITATION)
        ask(client, PARROT, kb="parrots")
        flushed = client.post("/v1/admin/cache/flush", json={"kb": "parrots"})
        assert flushed.status_code == 200 and flushed.json() == {
            "flushed": "answers",
            "kb": "parrots",
        }
        assert ask(client, INVITATION)[0] == "hit"
        assert ask(client, PARROT, kb="parrots")[0] == "miss"
        assert client.post("/v1/admin/cache/flush", json={}).status_code == 200
        assert ask(client, INVITATION)[0] == "miss"
        assert ask(client, PARROT, kb="parrots")[0] == "miss"
        bad = client.post("/v1/admin/cache/flush", json={"kb": "../x"})
        assert bad.status_code == 400


def test_generators_without_an_identity_are_not_cached(settings: Settings) -> None:
    generator = CountingGenerator()
    generator.cache_identity = None  # e.g. a model that cannot say what shapes its answers
    with client_for(settings, generator) as client:
        assert ask(client, INVITATION)[0] == "bypass"
        assert ask(client, INVITATION)[0] == "bypass"
    assert generator.calls == 2


# --- identical questions at once ------------------------------------------------------------


class CountingGenerator:
    """A scripted language model that counts its calls and can be held until released."""

    cache_identity = "counting/1"

    def __init__(self, hold: bool = False) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    async def condense(self, question: str, history: Sequence[Turn]) -> str:
        return condense_heuristic(question, history)

    async def stream(self, question: str, sources: Sequence[Hit]) -> AsyncIterator[str]:
        self.calls += 1
        self.started.set()
        assert await asyncio.to_thread(self.release.wait, 60), "never released"
        for piece in ("An invitation ", "is valid ", "for 7 days [1]."):
            yield piece


def is_lock_claim(prefix: str) -> Callable[[str], bool]:
    return lambda command: command.startswith(f"SET {prefix}:") and " NX " in command


@pytest.mark.parametrize("path", ["/v1/ask", "/v1/ask/stream"])
def test_identical_questions_arriving_together_are_computed_once(
    settings: Settings, redis_url: str, redis_prefix: str, path: str
) -> None:
    generator = CountingGenerator(hold=True)
    waiting = 4
    with (
        serve(create_app(settings, generator=generator)) as url,
        httpx.Client(base_url=url, timeout=60) as http,
        ThreadPoolExecutor(waiting + 1) as pool,
    ):

        def post() -> httpx.Response:
            return http.post(path, json={"question": INVITATION})

        first = pool.submit(post)
        assert generator.started.wait(60), "the first request never reached the model"
        monitor_client = redis.Redis.from_url(redis_url, socket_timeout=60)
        with monitor_client.monitor() as monitor:
            others = [pool.submit(post) for _ in range(waiting)]
            # Each of the others tried to take the lock the first one holds, and lost.
            wait_for_commands(monitor, is_lock_claim(redis_prefix), waiting)
        monitor_client.close()
        generator.release.set()
        responses = [first.result(), *(f.result() for f in others)]

    assert generator.calls == 1
    assert [r.status_code for r in responses] == [200] * (waiting + 1)
    assert [r.headers[CACHE] for r in responses] == ["miss"] + ["hit"] * waiting
    if path == "/v1/ask":
        answers = {r.json()["answer"] for r in responses}
        assert answers == {"An invitation is valid for 7 days [1]."}
    else:
        texts = {
            "".join(d["text"] for n, d in sse_events(r.text) if n == "delta") for r in responses
        }
        assert texts == {"An invitation is valid for 7 days [1]."}
