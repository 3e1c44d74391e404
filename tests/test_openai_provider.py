"""The ``openai`` answer provider (langchain-openai) against a local OpenAI-compatible stub."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.generators.base import REFUSAL
from citewise.settings import Settings
from tests.answer_helpers import serve, sse_events

INVITATION = "How long is an invitation valid?"
HANDBOOK = "account/admin-handbook.docx"
API_KEY = "sk-test-secret-4242"
MakeClient = Callable[..., TestClient]
SOURCE = re.compile(r'<source id="(\d+)"[^>]*>\n(.*?)\n</source>', re.DOTALL)


class StubLLM:
    """A tiny OpenAI-compatible chat server whose behaviour each test picks (``mode``):

    ``ok``     streams a reply citing the passage that holds the invitation rule
    ``error``  answers HTTP 500
    ``hang``   never answers (until the test ends)
    ``stall``  streams the first pieces of the reply, then never finishes
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.release = threading.Event()  # set at teardown, frees hanging handlers

    @staticmethod
    def reply(body: dict[str, Any]) -> str:
        prompt = str(body["messages"][-1]["content"])
        for n, text in SOURCE.findall(prompt):
            if "valid for 7 days" in text:
                return f"An invitation is valid for 7 days [{n}]."
        return REFUSAL

    @staticmethod
    def chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> str:
        data = {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return f"data: {json.dumps(data)}\n\n"

    async def stream(self, body: dict[str, Any], reply: str) -> AsyncIterator[str]:
        yield self.chunk(body, {"role": "assistant", "content": ""})
        # Three characters a piece: markers arrive split across chunks, as real models send them.
        pieces = [reply[i : i + 3] for i in range(0, len(reply), 3)]
        for i, piece in enumerate(pieces):
            if self.mode == "stall" and i == 2:
                await anyio.to_thread.run_sync(self.release.wait)
                return
            yield self.chunk(body, {"content": piece})
        yield self.chunk(body, {}, "stop")
        yield "data: [DONE]\n\n"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Response:
            body = await request.json()
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            if self.mode == "error":
                error = {"message": "model exploded in /srv/llm/worker.py", "type": "server_error"}
                return JSONResponse({"error": error}, status_code=500)
            if self.mode == "hang":
                await anyio.to_thread.run_sync(self.release.wait)
                return JSONResponse({"error": {"message": "too late"}}, status_code=500)
            reply = self.reply(body)
            if not body.get("stream"):
                message = {"role": "assistant", "content": reply}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                return JSONResponse(
                    {
                        "id": "chatcmpl-stub",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [choice],
                    }
                )
            return StreamingResponse(self.stream(body, reply), media_type="text/event-stream")

        return app


@pytest.fixture(scope="module")
def stub_server() -> Iterator[tuple[StubLLM, str]]:
    stub = StubLLM()
    with serve(stub.app()) as url:
        try:
            yield stub, url
        finally:
            stub.release.set()  # before the server stops: it waits for its handlers


@pytest.fixture
def stub(stub_server: tuple[StubLLM, str]) -> StubLLM:
    llm, _ = stub_server
    llm.mode = "ok"
    llm.requests.clear()
    llm.headers.clear()
    return llm


@pytest.fixture
def openai_client(
    stub_server: tuple[StubLLM, str], home: Path, cache_dir: Path
) -> Iterator[MakeClient]:
    """``openai_client(timeout)``: the app with the openai provider pointed at the stub."""
    _, url = stub_server
    with ExitStack() as stack:

        def make(timeout: float = 10.0) -> TestClient:
            settings = Settings(
                home=home,
                cache_dir=cache_dir,
                answer_provider="openai",
                llm_base_url=f"{url}/v1",
                llm_api_key=API_KEY,
                llm_model="stub-model",
                llm_timeout_s=timeout,
                llm_max_retries=0,
                redis_url="off",  # every test reaches the model; caching: test_answer_cache.py
            )
            return stack.enter_context(TestClient(create_app(settings)))

        yield make


def stream_events(client: TestClient, question: str) -> list[tuple[str, Any]]:
    response = client.post("/v1/ask/stream", json={"question": question})
    assert response.status_code == 200, response.text
    return sse_events(response.text)


def test_streams_the_model_reply_with_verified_citations(
    stub: StubLLM, openai_client: MakeClient
) -> None:
    client = openai_client()
    events = stream_events(client, INVITATION)

    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-2:] == ["citations", "done"]
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

    # What the provider sent: the configured model, streaming, system rules first, the key.
    [sent] = stub.requests
    assert sent["model"] == "stub-model" and sent["stream"] is True
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert f'<source id="{n}"' in sent["messages"][1]["content"]
    assert INVITATION in sent["messages"][1]["content"]
    assert stub.headers[0]["authorization"] == f"Bearer {API_KEY}"

    body = client.post("/v1/ask", json={"question": INVITATION}).json()
    assert body["answer"] == answer and body["citations"] == events[-2][1]["citations"]


def assert_no_leak(text: str, url: str) -> None:
    for secret in (API_KEY, "/srv/llm", url, "Traceback"):
        assert secret not in text, secret


def test_model_errors_become_502_and_an_error_event(
    stub: StubLLM, stub_server: tuple[StubLLM, str], openai_client: MakeClient
) -> None:
    stub.mode = "error"
    client = openai_client()

    response = client.post("/v1/ask", json={"question": INVITATION})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "llm_unavailable"
    assert "500" in response.json()["error"]["message"]
    assert_no_leak(response.text, stub_server[1])
    assert len(stub.requests) == 1  # llm_max_retries=0: no retry

    events = stream_events(client, INVITATION)
    assert [name for name, _ in events] == ["sources", "error"]
    assert events[-1][1]["code"] == "llm_unavailable"
    assert_no_leak(json.dumps(events), stub_server[1])


@pytest.mark.timeout(90)
def test_a_model_that_never_answers_times_out(stub: StubLLM, openai_client: MakeClient) -> None:
    stub.mode = "hang"
    client = openai_client(timeout=1.0)

    events = stream_events(client, INVITATION)
    assert [name for name, _ in events] == ["sources", "error"]
    assert events[-1][1]["code"] == "llm_timeout"

    response = client.post("/v1/ask", json={"question": INVITATION})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "llm_timeout"


@pytest.mark.timeout(90)
def test_a_model_that_stalls_mid_answer_times_out(stub: StubLLM, openai_client: MakeClient) -> None:
    stub.mode = "stall"
    client = openai_client(timeout=1.0)

    events = stream_events(client, INVITATION)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "error"
    assert set(names[1:-1]) == {"delta"}  # the first pieces arrived before the stall
    assert "".join(data["text"] for name, data in events if name == "delta") == "An inv"
    assert events[-1][1]["code"] == "llm_timeout"


def test_openai_sdk_sees_model_failures_as_api_errors(
    stub: StubLLM, openai_client: MakeClient
) -> None:
    stub.mode = "error"
    client = openai_client()
    # The TestClient is an httpx client: the SDK talks to the app in-process.
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    messages: list[Any] = [{"role": "user", "content": INVITATION}]

    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="default", messages=messages)
    assert caught.value.status_code == 502

    stream = sdk.chat.completions.create(model="default", messages=messages, stream=True)
    with pytest.raises(openai.APIError, match="language model"):
        list(stream)
