"""Redis killed, frozen and restarted under a running service: answers keep coming, /readyz
says degraded, rate limits follow their policy, and everything recovers by itself."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.redis_client import Breaker
from citewise.settings import Settings
from tests.answer_helpers import serve, sse_events
from tests.redis_helpers import RedisServer
from tests.test_answer_cache import CountingGenerator

INVITATION = "How long is an invitation valid?"
CACHE = "x-citewise-cache"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def settings_for(home: Path, cache_dir: Path, url: str | None, **overrides: Any) -> Settings:
    # redis_retry_s=0: after a failure the very next call probes Redis again, so recovery is
    # observable without waiting.
    values: dict[str, Any] = {"redis_retry_s": 0.0, "redis_timeout_s": 0.25}
    return Settings(home=home, cache_dir=cache_dir, redis_url=url, **(values | overrides))


def ask(client: TestClient, question: str = INVITATION) -> tuple[str, dict[str, Any]]:
    response = client.post("/v1/ask", json={"question": question})
    assert response.status_code == 200, response.text
    return response.headers[CACHE], response.json()


def test_answers_survive_a_killed_redis_and_recover(
    home: Path, cache_dir: Path, server: RedisServer
) -> None:
    with TestClient(create_app(settings_for(home, cache_dir, server.url))) as client:
        assert ask(client)[0] == "miss"
        status, cached = ask(client)
        assert status == "hit"
        assert client.get("/readyz").json()["status"] == "ready"

        server.kill()
        status, body = ask(client)
        assert status == "bypass" and body["answer"] == cached["answer"]
        assert body["cached"] is False and body["conversation_id"] is None  # none was saved
        stream = client.post("/v1/ask/stream", json={"question": INVITATION})
        assert stream.status_code == 200 and stream.headers[CACHE] == "bypass"
        assert [n for n, _ in sse_events(stream.text)][-2:] == ["citations", "done"]
        assert client.post("/v1/search", json={"query": "refund"}).status_code == 200
        follow = {"question": "and how many at once?", "conversation_id": "a" * 32}
        assert client.post("/v1/ask", json=follow).status_code == 200  # answered without it
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis_reachable"] is False
        assert ready.json()["degraded"] == ["redis_reachable"]

        server.start()  # an empty Redis on the same port
        assert client.get("/readyz").json()["status"] == "ready"
        assert ask(client)[0] == "miss"
        assert ask(client)[0] == "hit"


def test_a_frozen_redis_costs_a_few_timeouts_not_one_per_call(
    home: Path, cache_dir: Path, server: RedisServer
) -> None:
    settings = settings_for(home, cache_dir, server.url, redis_retry_s=60.0)
    with TestClient(create_app(settings)) as client:
        assert ask(client)[0] == "miss"
        breaker = client.app.state.services.redis.breaker
        assert breaker.failures == 0
        server.freeze()
        try:
            statuses = [ask(client)[0] for _ in range(5)]
        finally:
            server.thaw()
    assert statuses == ["bypass"] * 5
    # Counted, not timed: the first calls timed out until the breaker opened, and every later
    # call of the five requests skipped Redis instead of waiting out its own timeout.
    assert breaker.failures == Breaker.TIMEOUTS_TO_OPEN and breaker.down


def test_timeouts_between_successes_leave_the_breaker_closed() -> None:
    breaker = Breaker(retry_s=60.0)
    for _ in range(10):  # a saturated machine: some calls overrun, the others get through
        breaker.failed(redis.TimeoutError("Timeout reading from socket"))
        breaker.failed(TimeoutError())
        breaker.succeeded()
    assert breaker.available() and not breaker.down and breaker.failures == 20

    for _ in range(Breaker.TIMEOUTS_TO_OPEN):  # nothing gets through: Redis is frozen
        breaker.failed(redis.TimeoutError("Timeout reading from socket"))
    assert not breaker.available() and breaker.down


def test_a_refused_connection_opens_the_breaker_and_a_success_closes_it() -> None:
    breaker = Breaker(retry_s=60.0)
    breaker.failed(redis.ConnectionError("Connection refused"))
    assert not breaker.available() and breaker.down
    # A call already under way when it opened got through: Redis is back, no need to wait.
    breaker.succeeded()
    assert breaker.available() and not breaker.down


def test_fail_closed_rate_limits_refuse_while_redis_is_down(
    home: Path, cache_dir: Path, server: RedisServer
) -> None:
    settings = settings_for(home, cache_dir, server.url, rate_limit_fail_open=False)
    with TestClient(create_app(settings)) as client:
        assert ask(client)[0] == "miss"
        server.kill()
        refused = client.post("/v1/ask", json={"question": INVITATION})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "rate_limiter_unavailable"
        assert client.get("/healthz").status_code == 200
        server.start()
        assert ask(client)[0] == "miss"


def test_redis_dying_mid_stream_still_finishes_the_answer(
    home: Path, cache_dir: Path, server: RedisServer
) -> None:
    generator = CountingGenerator(hold=True)
    app = create_app(settings_for(home, cache_dir, server.url), generator=generator)
    with (
        serve(app) as url,
        httpx.Client(base_url=url, timeout=60) as http,
        http.stream("POST", "/v1/ask/stream", json={"question": INVITATION}) as response,
    ):
        assert response.status_code == 200 and response.headers[CACHE] == "miss"
        lines = response.iter_lines()
        first = [next(lines), next(lines)]
        assert first[0] == "event: sources"
        assert generator.started.wait(60)
        server.kill()  # while the model is answering
        generator.release.set()
        events = sse_events("\n".join([*first, *lines]))
    names = [n for n, _ in events]
    assert names[0] == "sources" and names[-2:] == ["citations", "done"]
    assert "".join(d["text"] for n, d in events if n == "delta") == (
        "An invitation is valid for 7 days [1]."
    )
    done = events[-1][1]
    assert done["cached"] is False and done["conversation_id"] is None


def test_the_embedded_redis_is_the_default(tmp_path: Path, home: Path, cache_dir: Path) -> None:
    settings = Settings(home=home, cache_dir=cache_dir)  # no CITEWISE_REDIS_URL
    assert settings.redis.url is None
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["checks"]["redis_reachable"] is True
        question = "What is the hotel limit per night?"
        assert ask(client, question)[0] in ("miss", "hit")  # the sample home may hold it
        assert ask(client, question)[0] == "hit"
    # Stopped with the app (saving its data under the home), not left running.
    assert (settings.redis_path / "citewise.rdb").exists()
    assert not (settings.redis_path / "citewise.rdb.settings").exists()


def test_redis_stopped_under_a_load_of_answers_loses_none_and_recovers(
    home: Path, cache_dir: Path, server: RedisServer
) -> None:
    """Eight clients ask without pause while Redis is killed and brought back."""
    questions = [INVITATION, "How do I cancel my subscription?", "How do refunds work?"]
    statuses: list[tuple[int, str]] = []
    progress = threading.Condition()
    stop = threading.Event()

    def client_loop(url: str, n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                question = f"{questions[n % len(questions)]} ({n % 2})"
                response = client.post("/v1/ask", json={"question": question})
                with progress:
                    statuses.append((response.status_code, response.headers.get(CACHE, "")))
                    progress.notify_all()
                n += 1

    def wait_for(count: int) -> None:
        with progress:
            assert progress.wait_for(lambda: len(statuses) >= count, timeout=120), len(statuses)

    app = create_app(settings_for(home, cache_dir, server.url, rate_limit_ask_per_ip="none"))
    with serve(app) as url:
        clients = [threading.Thread(target=client_loop, args=(url, n)) for n in range(8)]
        for thread in clients:
            thread.start()
        try:
            wait_for(40)
            server.kill()
            killed_at = len(statuses)
            wait_for(killed_at + 40)
            server.start()
            restarted_at = len(statuses)
            wait_for(restarted_at + 80)
        finally:
            stop.set()
            for thread in clients:
                thread.join(timeout=120)
    assert {code for code, _ in statuses} == {200}  # not one answer failed
    during = {cache for _, cache in statuses[killed_at + 8 : restarted_at]}
    assert "bypass" in during
    assert "hit" in {cache for _, cache in statuses[restarted_at + 40 :]}  # caching again
