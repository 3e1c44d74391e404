"""What a request must pass before its body is read (api/admission.py), through the real app:
body limits (a 100 MB body sent to a real uvicorn), rate limits counted before a body is
parsed, cross-site requests and media types. docs/security.md ("Attacks tested") says what
each attack was."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.admission import AdmittedRoute, RouteFacts
from api.main import create_app
from citewise.job_queue import queue_name
from citewise.settings import Settings
from tests.answer_helpers import serve
from tests.redis_helpers import drop_jobs

MB = 2**20
JSON = {"Content-Type": "application/json"}
EVIL = "https://evil.example"
SITE = "https://docs.example.com"
ADMIN_KEY = "admin-key-1234567890abcdef"
NOTES = [("files", ("notes.md", b"# Notes\n\nGift cards never expire.\n", "text/markdown"))]


class BodyMeter:
    """The app behind a count of the body bytes the server hands it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted if scope["type"] == "http" else receive, send)


def answer_to_a_head(
    url: str, path: str, length: int, kind: str = "application/json"
) -> tuple[int, Any]:
    """Send only the head of a POST that declares ``length`` bytes of ``kind``, none of them,
    and return the server's answer: status and JSON body (it closes the connection after it)."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    answer = b""
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head.encode("ascii"))
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def megabytes(count: int) -> Iterator[bytes]:
    """``count`` MB of JSON whitespace, as a stream: httpx sends it chunked, with no length."""
    for _ in range(count * 16):
        yield b" " * (MB // 16)


def test_a_100_mb_body_is_refused_before_it_is_read(make_settings: Callable[..., Settings]) -> None:
    # Before: the whole body was read into memory (about 230 MB of it) and parsed, and only
    # then did the request meet its key check.
    meter = BodyMeter(create_app(make_settings(redis_url="off", query_keys="q" * 20)))
    with serve(meter) as url:
        status, body = answer_to_a_head(url, "/v1/ask", 100 * MB)
        assert status == 413, body
        assert body["error"]["code"] == "too_large"
        assert "CITEWISE_MAX_BODY_MB" in body["error"]["message"]
        assert meter.received == 0  # answered from the head: no byte of the body was read

        # Chunked, a body declares no length: it is counted as it arrives.
        streamed = httpx.post(f"{url}/v1/ask", content=megabytes(100), headers=JSON, timeout=60)
        assert streamed.status_code == 413, streamed.text
        assert streamed.json()["error"]["code"] == "too_large"
        assert MB < meter.received < 2 * MB  # read up to the limit (1 MB), and no further

        # An upload has its own limit: ten times CITEWISE_MAX_UPLOAD_MB (20 MB) in all.
        multipart = "multipart/form-data; boundary=x"
        status, body = answer_to_a_head(url, "/v1/kbs/docs/ingest", 201 * MB, multipart)
        assert status == 413 and body["error"]["code"] == "upload_too_large", body
        assert meter.received < 2 * MB


def test_an_upload_over_its_request_limit_is_refused_from_its_length(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(redis_url="off", max_upload_mb=0.1)
    with TestClient(create_app(settings)) as client:
        refused = client.post(
            "/v1/kbs/docs/ingest",
            content=b"x" * (MB + 1),  # over ten times 0.1 MB
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["code"] == "upload_too_large"
    assert "CITEWISE_MAX_UPLOAD_MB" in refused.json()["error"]["message"]
    assert refused.headers["connection"] == "close"


def test_malformed_bodies_count_against_the_client_limit_and_good_ones_count_once(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    # Before: a malformed body was a 422 before any limit was counted, so a flood of them
    # (140 from one address) never met a 429.
    settings = make_settings(
        redis_url=redis_url, redis_prefix=redis_prefix, rate_limit_admin_per_ip="5/minute"
    )
    with TestClient(create_app(settings)) as client:

        def flush(body: bytes) -> httpx.Response:
            return client.post("/v1/admin/cache/flush", content=body, headers=JSON)

        # Counted before the body is read, and not again by the route's guard: 2 of 5.
        assert [flush(b"{}").status_code for _ in range(2)] == [200, 200]
        codes = [flush(b'{"kb": ').status_code for _ in range(6)]
        refused = flush(b"{}")
    assert codes == [422, 422, 422, 429, 429, 429]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"


@pytest.fixture
def keyless(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> Iterator[tuple[TestClient, Settings]]:
    """A service without keys, with a job queue: what a page on another site used to reach."""
    settings = make_settings(redis_url=redis_url, redis_prefix=redis_prefix)
    with TestClient(create_app(settings)) as client:
        yield client, settings
    drop_jobs(redis_url, redis_prefix)


def queued(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.llen(f"rq:queue:{queue_name(prefix)}"))
    finally:
        client.close()


def test_a_page_of_another_site_cannot_upload_or_flush_a_keyless_service(
    keyless: tuple[TestClient, Settings], redis_url: str, redis_prefix: str
) -> None:
    client, settings = keyless
    # Multipart and text/plain bodies need no CORS preflight: any page could send them.
    for browser in (
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        {"Origin": EVIL},  # a browser without Sec-Fetch-Site
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},  # a sandboxed frame or a file
    ):
        refused = client.post("/v1/kbs/docs/ingest", files=NOTES, headers=browser)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "origin_not_allowed"
        flushed = client.post("/v1/admin/cache/flush", json={}, headers=browser)
        assert flushed.status_code == 403, flushed.text
    as_text = client.post(
        "/v1/kbs/docs/ingest", content=b'{"path": "docs"}', headers={"Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415, as_text.text
    assert as_text.json()["error"]["code"] == "unsupported_media_type"
    assert "application/json" in as_text.json()["error"]["message"]
    # Nothing was stored or queued.
    assert not settings.uploads_path.exists()
    assert queued(redis_url, redis_prefix) == 0

    # The service's own pages, and clients that are no browser, get through.
    own = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/v1/admin/cache/flush", json={}, headers=own).status_code == 200
    assert client.post("/v1/admin/cache/flush", json={}).status_code == 200
    uploaded = client.post(
        "/v1/kbs/docs/ingest", files=NOTES, headers={"Origin": "http://testserver"}
    )
    assert uploaded.status_code == 202, uploaded.text
    assert queued(redis_url, redis_prefix) == 1


def test_keyed_requests_pass_and_cross_site_ones_are_still_refused(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    settings = make_settings(redis_url=redis_url, redis_prefix=redis_prefix, admin_keys=ADMIN_KEY)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/admin/cache/flush", json={}, headers=admin).status_code == 200
        cross = client.post("/v1/admin/cache/flush", json={}, headers=admin | {"Origin": EVIL})
        assert cross.status_code == 403, cross.text
        deleted = client.delete("/v1/admin/widgets/none", headers=admin)  # no body: no type
        assert deleted.status_code == 404, deleted.text


def test_a_widget_page_may_call_the_widget_routes_only(
    home: Path, cache_dir: Path, redis_url: str, redis_prefix: str
) -> None:
    settings = Settings(
        home=home,
        cache_dir=cache_dir,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        widget_secret="widget-signing-secret-for-tests-0123456789",
        widgets={"docs": {"origins": [SITE], "kb": "default"}},
    )
    page = {"Origin": SITE, "Sec-Fetch-Site": "cross-site"}
    with TestClient(create_app(settings)) as client:
        issued = client.post("/v1/widget/token", json={"widget_id": "docs"}, headers=page)
        assert issued.status_code == 200, issued.text
        token = {"X-Widget-Token": issued.json()["token"]}
        asked = client.post(
            "/v1/ask", json={"question": "How long is an invitation valid?"}, headers=page | token
        )
        assert asked.status_code == 200, asked.text
        assert asked.headers["access-control-allow-origin"] == SITE
        # The widget's site is not the service's own: nothing but the widget's routes.
        flushed = client.post("/v1/admin/cache/flush", json={}, headers=page)
        assert flushed.status_code == 403, flushed.text
        # Another site may still ask for a token and read why it gets none.
        other = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
        refused = client.post("/v1/widget/token", json={"widget_id": "docs"}, headers=other)
        assert refused.status_code == 403 and refused.headers["access-control-allow-origin"] == "*"
        stolen = client.post(
            "/v1/ask", json={"question": "How long is an invitation valid?"}, headers=other | token
        )
        assert stolen.status_code == 403, stolen.text


def test_every_route_admits_its_requests_and_knows_its_family_from_its_guard() -> None:
    app = create_app(Settings(home=Path("unused")))
    routes = [context.original_route for context in iter_route_contexts(app.router.routes)]
    api_routes = [route for route in routes if isinstance(route, APIRoute)]
    assert len(api_routes) > 20 and all(isinstance(r, AdmittedRoute) for r in api_routes)
    facts = {
        r.path: r.facts for r in api_routes if isinstance(r, AdmittedRoute) and "POST" in r.methods
    }
    assert facts["/v1/ask"] == RouteFacts(family="ask", widget=True)
    assert facts["/v1/chat/completions"] == RouteFacts(family="ask")
    assert facts["/v1/widget/token"] == RouteFacts(family="widget", public=True)
    assert facts["/v1/kbs/{kb}/ingest"] == RouteFacts(family="admin", uploads=True)
    assert facts["/v1/admin/cache/flush"] == RouteFacts(family="admin")
