"""The ``openai`` answer provider (langchain-openai) against a local OpenAI-compatible stub."""

from __future__ import annotations

import asyncio
import json
import queue
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.answer.generators.base import REFUSAL
from citewise.settings import Settings
from tests.answer_helpers import parse_sse, serve, sse_events

INVITATION = "How long is an invitation valid?"
HANDBOOK = "account/admin-handbook.docx"
API_KEY = "sk-test-secret-4242"
MakeClient = Callable[..., TestClient]
SOURCE = re.compile(r'<source id="(\d+)"[^>]*>\n(.*?)\n</source>', re.DOTALL)


class StubLLM:
    """A tiny OpenAI-compatible chat server whose behaviour each test picks (``mode``):

    ``ok``       streams a reply citing the passage that holds the invitation rule
    ``error``    answers HTTP 500
    ``hang``     accepts the request and never answers
    ``stall``    streams the first pieces of the reply, then never finishes
    ``drop``     streams the first pieces of the reply, then drops the connection
    ``trickle``  streams a piece every ``pace`` seconds, for ever

    The last four wait on events that never come: only the client hanging up ends them, and
    each such request puts its mode on ``hung_up``, so a test can see the connection closed.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.pace = 0.5
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.hung_up: queue.Queue[str] = queue.Queue()

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

    async def stream(self, body: dict[str, Any], reply: str, mode: str) -> AsyncIterator[str]:
        yield self.chunk(body, {"role": "assistant", "content": ""})
        # Three characters a piece: markers arrive split across chunks, as real models send them.
        pieces = [reply[i : i + 3] for i in range(0, len(reply), 3)]
        try:
            for i, piece in enumerate(pieces):
                if mode == "stall" and i == 2:
                    await anyio.Event().wait()
                if mode == "drop" and i == 2:
                    raise ConnectionAbortedError("the stub drops the connection mid-stream")
                yield self.chunk(body, {"content": piece})
            while mode == "trickle":
                # Pacing, not synchronisation: a model that keeps the stream alive, never ending.
                await anyio.sleep(self.pace)
                yield self.chunk(body, {"content": " and"})
        except anyio.get_cancelled_exc_class():
            self.hung_up.put(mode)  # Starlette cancels the body when the client disconnects
            raise
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
            mode = self.mode
            if mode == "hang":
                await request.receive()  # the body was read: this returns when the client hangs up
                self.hung_up.put(mode)
                return Response(status_code=499)
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
            return StreamingResponse(self.stream(body, reply, mode), media_type="text/event-stream")

        return app


@pytest.fixture(scope="module")
def stub_server() -> Iterator[tuple[StubLLM, str]]:
    stub = StubLLM()
    with serve(stub.app()) as url:
        yield stub, url


@pytest.fixture
def stub(stub_server: tuple[StubLLM, str]) -> Iterator[StubLLM]:
    llm, _ = stub_server
    llm.mode = "ok"
    llm.requests.clear()
    llm.headers.clear()
    yield llm
    assert llm.hung_up.empty(), "a test left a hung-up request unchecked"


def stub_settings(home: Path, cache_dir: Path, url: str, timeout: float) -> Settings:
    """The openai provider pointed at the stub, without retries or Redis (every request
    reaches the model; caching is tested in test_answer_cache.py)."""
    return Settings(
        home=home,
        cache_dir=cache_dir,
        answer_provider="openai",
        llm_base_url=f"{url}/v1",
        llm_api_key=API_KEY,
        llm_model="stub-model",
        llm_timeout_s=timeout,
        llm_max_retries=0,
        redis_url="off",
    )


@pytest.fixture
def openai_client(
    stub_server: tuple[StubLLM, str], home: Path, cache_dir: Path
) -> Iterator[MakeClient]:
    """``openai_client(timeout)``: the app with the openai provider pointed at the stub."""
    _, url = stub_server
    with ExitStack() as stack:

        def make(timeout: float = 10.0) -> TestClient:
            settings = stub_settings(home, cache_dir, url, timeout)
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


class LoopProbe:
    """Wraps an ASGI app to remember the server's event loop, so a test can list its tasks."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def _run(self, coroutine: Any, timeout: float) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def tasks(self) -> set[asyncio.Task[Any]]:
        async def listed() -> set[asyncio.Task[Any]]:
            return _other_tasks()

        tasks: set[asyncio.Task[Any]] = self._run(listed(), 10)
        return tasks

    def leftover(self, before: set[asyncio.Task[Any]], grace: float = 5.0) -> list[str]:
        """Tasks started since ``before`` that do not finish within ``grace`` seconds."""

        async def unfinished() -> list[str]:
            extra = _other_tasks() - before
            if not extra:
                return []
            _, pending = await asyncio.wait(extra, timeout=grace)
            return sorted(repr(task.get_coro()) for task in pending)

        names: list[str] = self._run(unfinished(), grace + 10)
        return names


def _other_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current}


TIMEOUT = 2.0
MARGIN = 3.0  # retrieval, two HTTP hops and a loaded 2-core machine


@pytest.fixture(scope="module")
def served(
    stub_server: tuple[StubLLM, str], home: Path, cache_dir: Path
) -> Iterator[tuple[str, LoopProbe]]:
    """The app, openai provider on the stub with a 2 s timeout, served by uvicorn in a thread."""
    _, url = stub_server
    probe = LoopProbe(create_app(stub_settings(home, cache_dir, url, TIMEOUT)))
    with serve(probe) as app_url:
        # One answer first: sse-starlette starts a shutdown watcher per event loop with the
        # first stream, which lives as long as the loop and is no request's leak.
        stub_server[0].mode = "ok"
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
    stub: StubLLM, served: tuple[str, LoopProbe], mode: str, status: int, code: str
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
