"""What a request must pass before its body is read (api/admission.py), through the real app:
body limits (a 100 MB body sent to a real uvicorn) and rate limits counted before a body is
parsed. docs/security.md ("Attacks tested") says what each attack was."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.admission import AdmittedRoute, RouteFacts
from api.main import create_app
from citewise.settings import Settings
from tests.answer_helpers import serve

MB = 2**20
JSON = {"Content-Type": "application/json"}


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


def test_every_route_admits_its_requests_and_knows_its_family_from_its_guard() -> None:
    app = create_app(Settings(home=Path("unused")))
    routes = [context.original_route for context in iter_route_contexts(app.router.routes)]
    api_routes = [route for route in routes if isinstance(route, APIRoute)]
    assert len(api_routes) > 20 and all(isinstance(r, AdmittedRoute) for r in api_routes)
    facts = {
        r.path: r.facts for r in api_routes if isinstance(r, AdmittedRoute) and "POST" in r.methods
    }
    assert facts["/v1/ask"] == RouteFacts(family="ask")
    assert facts["/v1/widget/token"] == RouteFacts(family="widget")
    assert facts["/v1/kbs/{kb}/ingest"] == RouteFacts(family="admin", uploads=True)
    assert facts["/v1/admin/cache/flush"] == RouteFacts(family="admin")
