"""API keys and rate limits through the real app: 401, 403, 429 with Retry-After."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.main import create_app
from citewise.errors import ConfigurationError
from citewise.serving.access import KeyRing
from citewise.settings import Settings

QUERY_KEY = "q-key-1234567890abcdef"
ADMIN_KEY = "admin-key-1234567890abcdef"
ADMIN_HASHED = "sha256:" + hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
QUESTION = {"question": "How long is an invitation valid?"}


@pytest.fixture
def make_client(home: Path, cache_dir: Path, redis_url: str, redis_prefix: str) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        settings = Settings(
            home=home,
            cache_dir=cache_dir,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            **overrides,
        )
        client = TestClient(create_app(settings))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error_of(response: Any, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


def test_keys_guard_query_and_admin_endpoints(make_client: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(query_keys=QUERY_KEY, admin_keys=f'["{ADMIN_HASHED}"]')
    flush = {"kb": "default"}

    missing = client.post("/v1/ask", json=QUESTION)
    assert error_of(missing, 401)["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert error_of(client.post("/v1/ask", json=QUESTION, headers=bearer("nope-" * 4)), 401)
    assert client.post("/v1/search", json={"query": "refund"}).status_code == 401
    assert client.get("/v1/models").status_code == 401
    chat = {"model": "default", "messages": [{"role": "user", "content": "refunds?"}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 401

    assert client.post("/v1/ask", json=QUESTION, headers=bearer(QUERY_KEY)).status_code == 200
    assert (
        client.post("/v1/ask", json=QUESTION, headers={"X-API-Key": QUERY_KEY}).status_code == 200
    )
    search = client.post("/v1/search", json={"query": "refund"}, headers=bearer(QUERY_KEY))
    assert search.status_code == 200
    chat_ok = client.post("/v1/chat/completions", json=chat, headers=bearer(QUERY_KEY))
    assert chat_ok.status_code == 200

    forbidden = client.post("/v1/admin/cache/flush", json=flush, headers=bearer(QUERY_KEY))
    assert error_of(forbidden, 403)["code"] == "forbidden"
    assert client.post("/v1/admin/cache/flush", json=flush).status_code == 401
    # The admin key is configured by its hash; the key itself is what clients send.
    admin = bearer(ADMIN_KEY)
    assert client.post("/v1/admin/cache/flush", json=flush, headers=admin).status_code == 200
    assert client.post("/v1/ask", json=QUESTION, headers=admin).status_code == 200
    assert client.get("/healthz").status_code == 200  # probes stay open

    assert QUERY_KEY not in caplog.text and ADMIN_KEY not in caplog.text
    assert "no API keys configured" not in caplog.text


def test_without_keys_the_service_is_open_and_says_so(make_client: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    client = make_client()
    assert "no API keys configured" in caplog.text
    # OpenAI SDKs always send some key; an open service ignores it.
    assert client.post("/v1/ask", json=QUESTION, headers=bearer("unused")).status_code == 200
    assert client.post("/v1/admin/cache/flush", json={}).status_code == 200


def test_only_admin_keys_leave_queries_public(make_client: Any) -> None:
    client = make_client(admin_keys=ADMIN_KEY)
    assert client.post("/v1/ask", json=QUESTION).status_code == 200
    assert client.post("/v1/admin/cache/flush", json={}).status_code == 401


def test_over_the_limit_is_a_429_with_retry_after(make_client: Any) -> None:
    client = make_client(rate_limit_ask_per_ip="2/minute", rate_limit_search_per_ip="none")
    for _ in range(2):
        assert client.post("/v1/ask", json=QUESTION).status_code == 200
    limited = client.post("/v1/ask/stream", json=QUESTION)  # the same family
    error = error_of(limited, 429)
    assert error["code"] == "rate_limited" and "2 per 1 minute" in error["message"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Other families count apart, and an empty limit is none.
    for _ in range(5):
        assert client.post("/v1/search", json={"query": "refund"}).status_code == 200


def test_limits_per_key_count_each_key_apart(make_client: Any) -> None:
    other = "q-key-other-1234567890"
    client = make_client(
        query_keys=[QUERY_KEY, other],
        rate_limit_search_per_key="1/minute",
        rate_limit_search_per_ip="100/minute",
    )
    body = {"query": "refund"}
    assert client.post("/v1/search", json=body, headers=bearer(QUERY_KEY)).status_code == 200
    limited = client.post("/v1/search", json=body, headers=bearer(QUERY_KEY))
    assert error_of(limited, 429)["message"].endswith(
        "retry in " + limited.headers["retry-after"] + "s"
    )
    assert "per API key" in limited.json()["error"]["message"]
    assert client.post("/v1/search", json=body, headers=bearer(other)).status_code == 200


def test_guessing_keys_is_rate_limited_per_client(make_client: Any) -> None:
    client = make_client(query_keys=QUERY_KEY, rate_limit_ask_per_ip="3/minute")
    statuses = [
        client.post("/v1/ask", json=QUESTION, headers=bearer(f"guess-{i:016d}")).status_code
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


def test_key_configuration_is_checked(cache_dir: Path, tmp_path: Path) -> None:
    configured = Settings(home=tmp_path, admin_keys=f" {ADMIN_HASHED} ,another-admin-key-123")
    ring = KeyRing(configured.access.admin_keys, [])
    assert ring.identify(ADMIN_KEY) is not None
    assert ring.identify("another-admin-key-123") is not None
    assert ring.identify("another-admin-key-12") is None
    caller = ring.identify(ADMIN_KEY)
    assert caller is not None and caller.role == "admin"
    assert ADMIN_KEY not in caller.owner and caller.owner.startswith("key-")

    with pytest.raises(ValidationError) as short:
        Settings(home=tmp_path, query_keys="short")
    assert "at least 16" in str(short.value) and "'short'" not in str(short.value)
    with pytest.raises(ValidationError):
        Settings(home=tmp_path, admin_keys="sha256:abc")
    settings = Settings(home=tmp_path, query_keys=QUERY_KEY)
    assert QUERY_KEY not in repr(settings) and QUERY_KEY not in str(settings.model_dump())


def test_a_bad_limit_fails_at_start(home: Path, cache_dir: Path) -> None:
    settings = Settings(
        home=home, cache_dir=cache_dir, redis_url="off", rate_limit_ask_per_ip="lots"
    )
    with (
        pytest.raises(ConfigurationError, match="CITEWISE_RATE_LIMIT_ASK_PER_IP"),
        TestClient(create_app(settings)),
    ):
        pass
