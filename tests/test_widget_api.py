"""Help widgets over HTTP (real app, real Redis, real model): page tokens bound to an origin,
CORS, per-widget limits, feedback, and the "missing documents" report (API and CLI)."""

from __future__ import annotations

import gzip
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.serving.widgets import ALGORITHM, ISSUER, signing_key
from citewise.settings import Settings
from tests.cli import citewise_env, run_json

SECRET = "widget-signing-secret-for-tests-0123456789"
QUERY_KEY = "q-key-1234567890abcdef"
ADMIN_KEY = "admin-key-1234567890abcdef"
SITE = "https://docs.example.com"
OTHER_SITE = "https://evil.example.net"
QUESTION = {"question": "How long is an invitation valid?"}


@pytest.fixture
def make_client(home: Path, cache_dir: Path, redis_url: str, redis_prefix: str) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {
            "home": home,
            "cache_dir": cache_dir,
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
            "widget_secret": SECRET,
            "widgets": {"docs": {"origins": [SITE], "kb": "default"}},
            "query_keys": QUERY_KEY,
            "admin_keys": ADMIN_KEY,
        }
        client = TestClient(create_app(Settings(**(values | overrides))))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def token_for(
    client: TestClient, widget_id: str = "docs", origin: str = SITE, visitor: str | None = None
) -> str:
    body = {"widget_id": widget_id} | ({"visitor": visitor} if visitor else {})
    response = client.post("/v1/widget/token", json=body, headers=page(origin))
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def page(origin: str, token: str | None = None) -> dict[str, str]:
    headers = {"Origin": origin}
    if token is not None:
        headers["X-Widget-Token"] = token
    return headers


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def code_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["code"])


def test_a_page_on_an_allowed_origin_gets_a_token_that_stands_in_for_a_key(
    make_client: Any,
) -> None:
    client = make_client()
    issued = client.post("/v1/widget/token", json={"widget_id": "docs"}, headers=page(SITE))
    assert issued.status_code == 200
    assert issued.json()["kb"] == "default" and issued.json()["expires_in"] == 900
    token = issued.json()["token"]

    assert code_of(client.post("/v1/ask", json=QUESTION), 401) == "unauthorized"
    answered = client.post("/v1/ask", json=QUESTION, headers=page(SITE, token))
    assert answered.status_code == 200
    assert "7 days" in answered.json()["answer"]
    streamed = client.post("/v1/ask/stream", json=QUESTION, headers=page(SITE, token))
    assert streamed.status_code == 200 and "event: done" in streamed.text
    searched = client.post("/v1/search", json={"query": "refund"}, headers=page(SITE, token))
    assert searched.status_code == 200 and searched.json()["hits"]
    # A token is no admin key, and a widget's page may call the widget's endpoints only.
    flush = client.post("/v1/admin/cache/flush", json={}, headers={"X-Widget-Token": token})
    assert code_of(flush, 401) == "unauthorized"
    flush = client.post("/v1/admin/cache/flush", json={}, headers=page(SITE, token))
    assert code_of(flush, 403) == "origin_not_allowed"


def test_tokens_are_refused_off_their_origin_expired_forged_or_for_another_kb(
    make_client: Any,
) -> None:
    client = make_client()
    refused = client.post("/v1/widget/token", json={"widget_id": "docs"}, headers=page(OTHER_SITE))
    assert code_of(refused, 403) == "origin_not_allowed"
    assert code_of(client.post("/v1/widget/token", json={"widget_id": "docs"}), 403) == (
        "origin_not_allowed"
    )
    unknown = client.post("/v1/widget/token", json={"widget_id": "nope"}, headers=page(SITE))
    assert code_of(unknown, 404) == "unknown_widget"

    token = token_for(client)
    stolen = client.post("/v1/ask", json=QUESTION, headers=page(OTHER_SITE, token))
    assert code_of(stolen, 403) == "origin_not_allowed"
    no_origin = client.post("/v1/ask", json=QUESTION, headers={"X-Widget-Token": token})
    assert code_of(no_origin, 403) == "origin_not_allowed"
    other_kb = client.post("/v1/ask", json={**QUESTION, "kb": "hr"}, headers=page(SITE, token))
    assert code_of(other_kb, 403) == "forbidden"

    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "docs", "aud": SITE, "kb": "default", "vis": "0" * 32}
    expired = jwt.encode(claims | {"iat": now - 1000, "exp": now - 10}, SECRET, ALGORITHM)
    response = client.post("/v1/ask", json=QUESTION, headers=page(SITE, expired))
    assert code_of(response, 401) == "widget_token_expired"
    forged = jwt.encode(claims | {"iat": now, "exp": now + 600}, "x" * 40, ALGORITHM)
    response = client.post("/v1/ask", json=QUESTION, headers=page(SITE, forged))
    assert code_of(response, 401) == "widget_token_invalid"
    assert SECRET not in response.text


def test_cors_answers_only_registered_origins(make_client: Any) -> None:
    client = make_client()
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-widget-token",
    }
    allowed = client.options("/v1/ask/stream", headers={"Origin": SITE, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SITE
    assert "x-widget-token" in allowed.headers["access-control-allow-headers"].lower()
    denied = client.options("/v1/ask/stream", headers={"Origin": OTHER_SITE, **preflight})
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers

    answered = client.post("/v1/ask", json=QUESTION, headers=page(SITE, token_for(client)))
    assert answered.headers["access-control-allow-origin"] == SITE
    assert "x-citewise-cache" in answered.headers["access-control-expose-headers"].lower()


def test_widgets_registered_through_the_admin_api_work_at_once_and_can_be_removed(
    make_client: Any,
) -> None:
    client = make_client()
    blog = "http://blog.example.org:8080"
    spec = {"origins": [blog + "/"], "kb": "default"}
    assert code_of(client.put("/v1/admin/widgets/blog", json=spec), 401) == "unauthorized"
    registered = client.put("/v1/admin/widgets/blog", json=spec, headers=admin())
    assert registered.status_code == 200
    assert registered.json() == {
        "widget_id": "blog",
        "origins": [blog],
        "kb": "default",
        "source": "api",
    }
    listed = client.get("/v1/admin/widgets", headers=admin()).json()["widgets"]
    assert [w["widget_id"] for w in listed] == ["blog", "docs"]

    token = token_for(client, "blog", blog)
    assert client.post("/v1/ask", json=QUESTION, headers=page(blog, token)).status_code == 200
    preflight = client.options(
        "/v1/ask", headers={"Origin": blog, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200

    bad = client.put("/v1/admin/widgets/blog", json={"origins": ["ftp://x"]}, headers=admin())
    assert code_of(bad, 400) == "invalid_request"
    configured = client.put("/v1/admin/widgets/docs", json=spec, headers=admin())
    assert code_of(configured, 400) == "invalid_request"

    assert client.delete("/v1/admin/widgets/blog", headers=admin()).status_code == 204
    revoked = client.post("/v1/ask", json=QUESTION, headers=page(blog, token))
    assert code_of(revoked, 403) == "origin_not_allowed"  # no widget lists the page's site now
    gone = client.delete("/v1/admin/widgets/blog", headers=admin())
    assert code_of(gone, 404) == "unknown_widget"


def test_each_widget_has_its_own_rate_limit(make_client: Any) -> None:
    client = make_client(rate_limit_ask_per_widget="2/minute")
    token = token_for(client)
    for _ in range(2):
        assert client.post("/v1/ask", json=QUESTION, headers=page(SITE, token)).status_code == 200
    over = client.post("/v1/ask", json=QUESTION, headers=page(SITE, token))
    assert code_of(over, 429) == "rate_limited"
    assert int(over.headers["retry-after"]) >= 1
    assert "help widget" in over.json()["error"]["message"]
    # Other callers are not that widget.
    keyed = client.post("/v1/ask", json=QUESTION, headers={"Authorization": f"Bearer {QUERY_KEY}"})
    assert keyed.status_code == 200


def test_feedback_refusals_and_the_missing_documents_report(
    make_client: Any, home: Path, cache_dir: Path, redis_url: str, redis_prefix: str
) -> None:
    client = make_client()
    headers = page(SITE, token_for(client))
    answered = client.post("/v1/ask", json=QUESTION, headers=headers).json()
    for question in (
        "What is the capital of France?",
        "Which city is the capital of France?",
        "what is the capital of france",
        "Who won the 1998 football world cup?",
    ):
        refusal = client.post("/v1/ask", json={"question": question}, headers=headers).json()
        assert refusal["refused"], question

    thumbs = {"answer_id": answered["answer_id"], "rating": "down", "comment": "Too short."}
    assert client.post("/v1/feedback", json=thumbs).status_code == 401  # no key, no token
    recorded = client.post("/v1/feedback", json=thumbs, headers=headers)
    assert recorded.status_code == 202 and recorded.json() == {"recorded": True}
    liked = {**thumbs, "rating": "up", "comment": ""}
    assert client.post("/v1/feedback", json=liked, headers=headers).status_code == 202
    unknown = client.post("/v1/feedback", json={**thumbs, "answer_id": "0" * 32}, headers=headers)
    assert code_of(unknown, 404) == "answer_not_found"
    bad = client.post("/v1/feedback", json={**thumbs, "rating": "meh"}, headers=headers)
    assert bad.status_code == 422

    report = client.get("/v1/admin/report", params={"since": "1h"}, headers=admin())
    assert report.status_code == 200, report.text
    groups = report.json()["groups"]
    first = groups[0]
    assert first["count"] == 3 and first["refused"] == 3
    assert first["question"].lower().rstrip("?") == "what is the capital of france"
    by_question = {g["question"]: g for g in groups}
    disliked = by_question[QUESTION["question"]]
    assert disliked["disliked"] == 1 and disliked["comments"] == ["Too short."]
    assert disliked["answer_ids"] == [answered["answer_id"]]
    assert "Who won the 1998 football world cup?" in by_question
    assert len(groups) == 3  # the thumbs up is not a problem to report

    env = citewise_env(
        home, cache_dir, CITEWISE_REDIS_URL=redis_url, CITEWISE_REDIS_PREFIX=redis_prefix
    )
    code, printed = run_json("report", "--since", "1h", env=env)
    assert code == 0
    assert [g["question"] for g in printed["groups"]] == [g["question"] for g in groups]
    code, printed = run_json("report", "--since", "yesterday-ish", env=env)
    assert code == 2 and printed["error"]["code"] == "invalid_request"


def test_the_widget_script_is_served_compressed_and_cacheable(make_client: Any) -> None:
    client = make_client()
    response = client.get("/widget.js", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "max-age" in response.headers["cache-control"]
    source = Path("api/static/widget.js").read_bytes()
    assert response.content == source  # the client undid the gzip encoding
    assert response.headers["content-encoding"] == "gzip"
    assert len(gzip.compress(source)) < 20_000


def test_without_a_configured_secret_one_is_created_once_and_kept_private(
    make_settings: Any,
) -> None:
    settings = make_settings()
    first = signing_key(settings.widget, settings.widget_secret_path)
    assert len(first) >= 32
    again = make_settings()
    assert signing_key(again.widget, again.widget_secret_path) == first
    mode = stat.S_IMODE(settings.widget_secret_path.stat().st_mode)
    assert mode == 0o600


def test_any_page_may_read_why_the_token_exchange_refused_it(make_client: Any) -> None:
    client = make_client()
    refused = client.post("/v1/widget/token", json={"widget_id": "docs"}, headers=page(OTHER_SITE))
    assert code_of(refused, 403) == "origin_not_allowed"
    assert refused.headers["access-control-allow-origin"] == "*"
    # ...but nothing else is readable there.
    token = token_for(client)
    other = client.post("/v1/ask", json=QUESTION, headers=page(OTHER_SITE, token))
    assert "access-control-allow-origin" not in other.headers


def test_a_token_reaches_its_own_knowledge_base_and_the_routes_the_widget_uses_only(
    make_client: Any,
) -> None:
    client = make_client(
        widgets={
            "docs": {"origins": [SITE], "kb": "default"},
            "pets": {"origins": [SITE], "kb": "parrots"},
        }
    )
    docs, pets = page(SITE, token_for(client, "docs")), page(SITE, token_for(client, "pets"))
    every = client.get("/v1/models", headers=admin()).json()["data"]
    assert {m["id"] for m in every} >= {"default", "parrots"}
    # The model list shows a token its own knowledge base, not every one there is.
    assert [m["id"] for m in client.get("/v1/models", headers=docs).json()["data"]] == ["default"]
    assert [m["id"] for m in client.get("/v1/models", headers=pets).json()["data"]] == ["parrots"]

    # Feedback only on the answers of its own knowledge base.
    answer_id = client.post("/v1/ask", json=QUESTION, headers=docs).json()["answer_id"]
    thumbs = {"answer_id": answer_id, "rating": "down", "comment": "not about parrots"}
    assert code_of(client.post("/v1/feedback", json=thumbs, headers=pets), 403) == "forbidden"
    assert client.post("/v1/feedback", json=thumbs, headers=docs).status_code == 202
    keyed = {"Authorization": f"Bearer {QUERY_KEY}"}  # a key is bound to no knowledge base
    assert client.post("/v1/feedback", json=thumbs, headers=keyed).status_code == 202

    # The OpenAI-compatible chat is for keys: a token stands in for none there, and a widget's
    # page may not call it.
    chat = {"model": "default", "messages": [{"role": "user", "content": QUESTION["question"]}]}
    scripted = {"X-Widget-Token": docs["X-Widget-Token"]}
    assert code_of(client.post("/v1/chat/completions", json=chat, headers=scripted), 401) == (
        "unauthorized"
    )
    assert code_of(client.post("/v1/chat/completions", json=chat, headers=docs), 403) == (
        "origin_not_allowed"
    )
    assert client.post("/v1/chat/completions", json=chat, headers=keyed).status_code == 200


def test_each_visitor_owns_their_conversations(make_client: Any) -> None:
    client = make_client()
    alice, bob = "a" * 32, "b" * 32
    as_alice = page(SITE, token_for(client, visitor=alice))
    as_bob = page(SITE, token_for(client, visitor=bob))

    started = client.post("/v1/ask", json=QUESTION, headers=as_alice).json()
    follow_up = {"question": "Can I resend it?", "conversation_id": started["conversation_id"]}
    # Another visitor of the same widget who learns the id cannot read or extend it...
    stolen = client.post("/v1/ask", json=follow_up, headers=as_bob)
    assert code_of(stolen, 404) == "conversation_not_found"
    # ...while its visitor goes on with it, with a fresh token too.
    again = page(SITE, token_for(client, visitor=alice))
    for headers in (as_alice, again):
        assert client.post("/v1/ask", json=follow_up, headers=headers).status_code == 200

    issued = client.post(
        "/v1/widget/token", json={"widget_id": "docs", "visitor": alice}, headers=page(SITE)
    )
    assert issued.json()["visitor"] == alice
    assert jwt.decode(issued.json()["token"], SECRET, [ALGORITHM], audience=SITE)["vis"] == alice
    # No visitor id sent: a new one each time, so such visitors share nothing either.
    first = client.post("/v1/widget/token", json={"widget_id": "docs"}, headers=page(SITE))
    second = client.post("/v1/widget/token", json={"widget_id": "docs"}, headers=page(SITE))
    assert first.json()["visitor"] != second.json()["visitor"]
    assert len(first.json()["visitor"]) == 32
    bad = client.post(
        "/v1/widget/token", json={"widget_id": "docs", "visitor": "me"}, headers=page(SITE)
    )
    assert bad.status_code == 422

    # A token naming no visitor (as issued before visitors had ids) is refused; the widget
    # then fetches a new one.
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "docs", "aud": SITE, "kb": "default"}
    old = jwt.encode(claims | {"iat": now, "exp": now + 600}, SECRET, ALGORITHM)
    refused = client.post("/v1/ask", json=QUESTION, headers=page(SITE, old))
    assert code_of(refused, 401) == "widget_token_invalid"
