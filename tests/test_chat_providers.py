"""The hosted answer providers (openai, anthropic, gemini), each through its vendor's own client
library against a local stub of the vendor's wire protocol (``tests/llm_stubs.py``): one suite,
so every provider streams, cites, condenses, fails and times out the same way."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.answer.generators.base import REFUSAL
from citewise.answer.generators.chat import prompt
from citewise.errors import ConfigurationError
from citewise.search.embeddings import LocalEmbeddings
from citewise.settings import Settings
from citewise.settings_serving import DEFAULT_MODELS
from citewise.wiring import build_generator
from tests.answer_helpers import parse_sse, serve, sse_events
from tests.llm_stubs import INVITATION, LEAKY_ERROR, STUBS, LoopProbe, StubModel

HANDBOOK = "account/admin-handbook.docx"
API_KEY = "sk-test-secret-4242"
PROVIDERS = ["openai", "anthropic", "gemini"]
DEFAULT_ENDPOINTS = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "gemini": "generativelanguage.googleapis.com",
}
MakeClient = Callable[..., TestClient]
ANSWER_LIMIT = 300


@pytest.fixture(scope="module", params=PROVIDERS)
def stub_server(request: pytest.FixtureRequest) -> Iterator[tuple[StubModel, str]]:
    stub = STUBS[request.param]()
    with serve(stub.app()) as url:
        yield stub, url


@pytest.fixture
def stub(stub_server: tuple[StubModel, str]) -> Iterator[StubModel]:
    llm, _ = stub_server
    llm.reset()
    yield llm
    assert llm.hung_up.empty(), "a test left a hung-up request unchecked"


def stub_settings(
    home: Path, cache_dir: Path, stub: StubModel, url: str, timeout: float
) -> Settings:
    """The stub's provider pointed at it, without retries or Redis (every request reaches the
    model; caching is tested in test_answer_cache.py)."""
    return Settings(
        home=home,
        cache_dir=cache_dir,
        answer_provider=stub.provider,
        llm_base_url=stub.base_url(url),
        llm_api_key=API_KEY,
        llm_model="stub-model",
        llm_timeout_s=timeout,
        llm_max_retries=0,
        llm_max_tokens=ANSWER_LIMIT,
        redis_url="off",
    )


@pytest.fixture
def provider_client(
    stub_server: tuple[StubModel, str], home: Path, cache_dir: Path
) -> Iterator[MakeClient]:
    """``provider_client(timeout)``: the app with the stub's provider pointed at the stub."""
    stub, url = stub_server
    with ExitStack() as stack:

        def make(timeout: float = 10.0) -> TestClient:
            settings = stub_settings(home, cache_dir, stub, url, timeout)
            return stack.enter_context(TestClient(create_app(settings)))

        yield make


def stream_events(client: TestClient, question: str) -> list[tuple[str, Any]]:
    response = client.post("/v1/ask/stream", json={"question": question})
    assert response.status_code == 200, response.text
    return sse_events(response.text)


def test_streams_the_model_reply_with_verified_citations(
    stub: StubModel, provider_client: MakeClient
) -> None:
    client = provider_client()
    events = stream_events(client, INVITATION)

    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-2:] == ["citations", "done"], events[-1]
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) > 3  # streamed as it came, not in one piece
    answer = "".join(deltas)
    sources = events[0][1]["sources"]
    n = next(s["n"] for s in sources if "valid for 7 days" in s["text"])
    assert answer == f"An invitation is valid for 7 days [{n}]."

    [citation] = events[-2][1]["citations"]
    assert citation["n"] == n and citation["source"] == HANDBOOK
    assert citation["supported"] is True and "valid for 7 days" in citation["quote"]
    assert events[-1][1]["refused"] is False

    # What the provider sent: the configured model and key, streaming, the rules of the prompt
    # file as system instructions, the sources and the question as the user's message.
    [sent] = stub.sent
    assert sent.model == "stub-model" and sent.streamed and sent.key == API_KEY
    assert sent.max_tokens == ANSWER_LIMIT  # CITEWISE_LLM_MAX_TOKENS, in the protocol's words
    assert sent.system.strip() == prompt("answer_system.txt").format(refusal=REFUSAL).strip()
    assert f'<source id="{n}"' in sent.prompt and INVITATION in sent.prompt

    body = client.post("/v1/ask", json={"question": INVITATION}).json()
    assert body["answer"] == answer and body["citations"] == events[-2][1]["citations"]


def test_a_follow_up_is_rewritten_by_the_model_before_retrieval(
    stub: StubModel, provider_client: MakeClient
) -> None:
    history = [
        {"role": "user", "content": "Can I invite colleagues to my workspace?"},
        {"role": "assistant", "content": "Yes, admins can invite them [1]."},
    ]
    follow_up = "And for how long does it stay valid?"
    body = provider_client().post("/v1/ask", json={"question": follow_up, "history": history})
    assert body.status_code == 200, body.text

    rewrite, answer = stub.sent
    assert follow_up in rewrite.prompt  # streamed or not, as each provider asks for it
    assert "Can I invite colleagues" in rewrite.prompt
    assert answer.streamed and INVITATION in answer.prompt  # retrieval saw the rewritten one
    assert body.json()["answer"].startswith("An invitation is valid for 7 days [")
    assert [c["source"] for c in body.json()["citations"]] == [HANDBOOK]


def assert_no_leak(text: str, url: str) -> None:
    for secret in (API_KEY, "/srv/llm", LEAKY_ERROR, url, "Traceback"):
        assert secret not in text, secret


def test_model_errors_become_502_and_an_error_event(
    stub: StubModel, stub_server: tuple[StubModel, str], provider_client: MakeClient
) -> None:
    stub.mode = "error"
    client = provider_client()

    response = client.post("/v1/ask", json={"question": INVITATION})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "llm_unavailable"
    assert "500" in response.json()["error"]["message"]
    assert_no_leak(response.text, stub_server[1])
    assert len(stub.sent) == 1  # llm_max_retries=0: no retry

    events = stream_events(client, INVITATION)
    assert [name for name, _ in events] == ["sources", "error"]
    assert events[-1][1]["code"] == "llm_unavailable"
    assert_no_leak(json.dumps(events), stub_server[1])


TIMEOUT = 2.0
MARGIN = 3.0  # retrieval, two HTTP hops and a loaded 2-core machine


@pytest.fixture(scope="module")
def served(
    stub_server: tuple[StubModel, str], home: Path, cache_dir: Path
) -> Iterator[tuple[str, LoopProbe]]:
    """The app, on the stub with a 2 s timeout, served by uvicorn in a thread."""
    stub, url = stub_server
    probe = LoopProbe(create_app(stub_settings(home, cache_dir, stub, url, TIMEOUT)))
    with serve(probe) as app_url:
        # One answer first: sse-starlette starts a shutdown watcher per event loop with the
        # first stream, which lives as long as the loop and is no request's leak.
        stub.mode = "ok"
        warm_up = httpx.post(f"{app_url}/v1/ask/stream", json={"question": INVITATION})
        assert sse_events(warm_up.text)[-1][0] == "done"
        yield app_url, probe


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("error", 502, "llm_unavailable"),
        ("hang", 504, "llm_timeout"),
        ("stall", 504, "llm_timeout"),
        ("drop", 502, "llm_unavailable"),
        ("trickle", 504, "llm_timeout"),
    ],
)
def test_a_failing_model_ends_every_request_within_the_timeout(
    stub: StubModel, served: tuple[str, LoopProbe], mode: str, status: int, code: str
) -> None:
    url, probe = served
    stub.mode = mode
    stub.pace = TIMEOUT / 4  # trickle: each wait is short, the whole answer is not
    before = probe.tasks()
    with httpx.Client(base_url=url, timeout=TIMEOUT * 10) as http:
        started = time.monotonic()
        with http.stream("POST", "/v1/ask/stream", json={"question": INVITATION}) as response:
            assert response.status_code == 200
            lines = []
            for line in response.iter_lines():  # a stream that never ends fails here, promptly
                lines.append(line)
                assert time.monotonic() - started < TIMEOUT + MARGIN, lines
            events = parse_sse(lines)
        streamed_in = time.monotonic() - started
        started = time.monotonic()
        whole = http.post("/v1/ask", json={"question": INVITATION})
        asked_in = time.monotonic() - started

    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "error", names
    assert set(names[1:-1]) <= {"delta"} and events[-1][1]["code"] == code
    if mode in {"stall", "drop"}:  # the pieces sent before the failure were passed on
        assert "".join(data["text"] for name, data in events if name == "delta") == "An inv"
    assert whole.status_code == status and whole.json()["error"]["code"] == code
    for elapsed in (streamed_in, asked_in):
        assert elapsed < TIMEOUT + MARGIN, (mode, elapsed)
        if code == "llm_timeout":  # ended by the timeout, not by something else first
            assert elapsed > TIMEOUT * 0.9, (mode, elapsed)
    if mode in {"hang", "stall", "trickle"}:  # the model's connection was closed both times
        assert [stub.hung_up.get(timeout=MARGIN) for _ in range(2)] == [mode, mode]
    assert probe.leftover(before) == []


def test_openai_sdk_sees_model_failures_as_api_errors(
    stub: StubModel, provider_client: MakeClient
) -> None:
    stub.mode = "error"
    client = provider_client()
    # The TestClient is an httpx client: the SDK talks to the app in-process.
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    messages: list[Any] = [{"role": "user", "content": INVITATION}]

    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="default", messages=messages)
    assert caught.value.status_code == 502

    stream = sdk.chat.completions.create(model="default", messages=messages, stream=True)
    with pytest.raises(openai.APIError, match="language model"):
        list(stream)


# --- start-up: settings that cannot work stop the service -----------------------------------

Build = Callable[..., Any]


@pytest.fixture
def build(make_settings: Callable[..., Settings], embeddings: LocalEmbeddings) -> Build:
    """``build(provider, **settings)``: the generator as the service builds it (closed again)."""

    def make(provider: str, **llm: Any) -> Any:
        generator = build_generator(make_settings(answer_provider=provider, **llm), embeddings)
        asyncio.run(generator.aclose())
        return generator

    return make


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_missing_key_is_a_start_up_error_naming_the_variable(build: Build, provider: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{provider} needs CITEWISE_LLM_API_KEY"):
        build(provider)
    # A server of one's own (a proxy, a gateway that adds the key) may take none.
    build(provider, llm_base_url="http://127.0.0.1:9")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_and_model_name_the_cached_answers(build: Build, provider: str) -> None:
    default = build(provider, llm_api_key=API_KEY).cache_identity
    assert default.startswith(f"{provider}/{DEFAULT_ENDPOINTS[provider]}/")
    assert f"/{DEFAULT_MODELS[provider]}/" in default
    other = build(provider, llm_api_key=API_KEY, llm_model="other-model").cache_identity
    assert "/other-model/" in other and other != default
    shorter = build(provider, llm_api_key=API_KEY, llm_max_tokens=64).cache_identity
    assert shorter != default  # a shorter limit writes other answers


@pytest.mark.parametrize(
    ("provider", "package"),
    [("anthropic", "langchain_anthropic"), ("gemini", "langchain_google_genai")],
)
def test_a_provider_without_its_extra_says_what_to_install(
    build: Build, monkeypatch: pytest.MonkeyPatch, provider: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # how a missing package imports
    with pytest.raises(ConfigurationError, match=rf"pip install 'citewise\[{provider}\]'"):
        build(provider, llm_api_key=API_KEY)


def test_anthropic_refuses_a_temperature_its_api_refuses(build: Build) -> None:
    with pytest.raises(ConfigurationError, match="CITEWISE_LLM_TEMPERATURE"):
        build("anthropic", llm_api_key=API_KEY, llm_temperature=1.5)
