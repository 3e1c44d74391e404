"""Requests generated from the OpenAPI schema (schemathesis) against the real app, served by
uvicorn over the sample knowledge base with a real Redis: no request may get a 5xx, and every
documented JSON response must match its schema. Plus what the generator cannot produce."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from api.main import create_app
from citewise.settings import FLAT, Settings
from tests.answer_helpers import serve

# The operations, read from the app without starting it (no services are built for this), and
# whether each takes any input that can be made invalid.
OPERATIONS = [
    (method.upper(), path, bool(spec.get("parameters") or spec.get("requestBody")))
    for path, operations in create_app(Settings(home=Path("unused"))).openapi()["paths"].items()
    for method, spec in operations.items()
]
STREAMING = {"/v1/ask/stream"}  # an event stream has no response schema to hold it to


@pytest.fixture(scope="module")
def served(
    home: Path, cache_dir: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app on a copy of the sample home (admin endpoints write) and the test Redis."""
    copy = tmp_path_factory.mktemp("schema-home") / "home"
    shutil.copytree(home, copy)
    prefix = "cwtest-schema"
    limits = {  # generated requests are to reach the handlers, not the rate limiter
        name: "none"
        for name in FLAT
        if name.startswith("rate_limit_") and name.endswith(("_ip", "_key", "_widget"))
    }
    app_settings = Settings(
        home=copy,
        cache_dir=cache_dir,
        redis_url=redis_url,
        redis_prefix=prefix,
        widget_secret="schema-test-widget-secret-0123456789abcdef",
        **limits,
    )
    try:
        with serve(create_app(app_settings)) as url:
            yield url
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="module")
def api_schema(served: str) -> Any:
    return schemathesis.openapi.from_url(f"{served}/openapi.json")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("method", "path", "has_input"), OPERATIONS)
def test_no_generated_request_gets_a_server_error(
    api_schema: Any, method: str, path: str, has_input: bool
) -> None:
    operation = api_schema[path][method]
    checks = [not_a_server_error]
    if path not in STREAMING:
        checks += [response_schema_conformance, content_type_conformance]
    # Valid requests, then (where there is input to spoil) invalid ones.
    for mode in [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * has_input:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=10,
            deadline=None,
            derandomize=True,  # the same requests every run: a failure here is reproducible
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(checks=checks, timeout=30)

        run()


# Generated strings never hold a lone surrogate, which JSON can spell and which made the
# tokenizer fail inside /v1/ask with a 500.
LONE_SURROGATES = [
    ("POST", "/v1/ask", b'{"question": "How long is an invitation valid \\ud800?"}'),
    (
        "POST",
        "/v1/ask/stream",
        b'{"question": "refunds", "history": [{"role": "user", "content": "\\udc00"}]}',
    ),
    ("POST", "/v1/search", b'{"query": "refund \\ud83d"}'),
    (
        "POST",
        "/v1/chat/completions",
        b'{"model": "default", "messages": [{"role": "user", "content": "refunds \\ud800"}]}',
    ),
    ("POST", "/v1/widget/token", b'{"widget_id": "\\udfff"}'),
    (
        "POST",
        "/v1/feedback",
        b'{"answer_id": "' + b"0" * 32 + b'", "rating": "up", "comment": "\\ud800"}',
    ),
    ("POST", "/v1/admin/cache/flush", b'{"kb": "\\ud800"}'),
    ("PUT", "/v1/admin/widgets/docs", b'{"origins": ["https://\\ud800.example"]}'),
]


@pytest.mark.parametrize(("method", "path", "body"), LONE_SURROGATES)
def test_a_lone_surrogate_in_a_body_is_a_400(
    served: str, method: str, path: str, body: bytes
) -> None:
    response = httpx.request(
        method, served + path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert "surrogate" in response.json()["error"]["message"]


def test_a_paired_surrogate_escape_is_text(served: str) -> None:
    body = b'{"question": "How long is an invitation valid? \\ud83d\\ude00"}'
    response = httpx.post(
        f"{served}/v1/ask", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200 and "7 days" in response.json()["answer"]
