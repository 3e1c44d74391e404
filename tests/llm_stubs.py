"""Local stand-ins for the hosted chat APIs, each speaking its vendor's wire protocol, so the
vendor's own client library runs unchanged against them and nothing reaches the network.

    OpenAIStub     POST /v1/chat/completions                        chunks as ``data:`` lines
    AnthropicStub  POST /v1/messages                                named Messages API events
    GeminiStub     POST /v1beta/models/{model}:generateContent,
                   POST /v1beta/models/{model}:streamGenerateContent?alt=sse

The shapes are those the SDKs parse: openai's ``ChatCompletionChunk``, anthropic's
``RawMessageStreamEvent`` types, google-genai's ``GenerateContentResponse``.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from citewise.answer.generators.base import REFUSAL

INVITATION = "How long is an invitation valid?"
SOURCE = re.compile(r'<source id="(\d+)"[^>]*>\n(.*?)\n</source>', re.DOTALL)
LEAKY_ERROR = "model exploded in /srv/llm/worker.py"  # must never reach a Citewise caller


@dataclass(frozen=True)
class Sent:
    """One request as the stub understood it, whichever protocol carried it."""

    model: str
    streamed: bool
    system: str  # the system instructions
    prompt: str  # the last user message
    key: str  # the API key the client sent
    max_tokens: int | None  # the most the reply may hold, in tokens, as the protocol says it


class StubModel:
    """A chat API whose behaviour each test picks (``mode``); subclasses speak the protocols.

    ``ok``       streams a reply citing the passage that holds the invitation rule (and answers
                 a request to rewrite a follow-up with the stand-alone question)
    ``error``    answers HTTP 500 with the protocol's error body
    ``hang``     accepts the request and never answers
    ``stall``    streams the first pieces of the reply, then never finishes
    ``drop``     streams the first pieces of the reply, then drops the connection
    ``trickle``  streams a piece every ``pace`` seconds, for ever

    The last four wait on events that never come: only the client hanging up ends them, and
    each such request puts its mode on ``hung_up``, so a test can see the connection closed.
    """

    provider = ""

    def __init__(self) -> None:
        self.mode = "ok"
        self.pace = 0.5
        self.sent: list[Sent] = []
        self.hung_up: queue.Queue[str] = queue.Queue()

    def base_url(self, url: str) -> str:
        """CITEWISE_LLM_BASE_URL for a stub served at ``url``."""
        return url

    def reset(self) -> None:
        self.mode = "ok"
        self.sent.clear()

    @staticmethod
    def reply(prompt: str) -> str:
        if "Last question:" in prompt:  # condense.txt: a follow-up to rewrite
            return INVITATION
        for n, text in SOURCE.findall(prompt):
            if "valid for 7 days" in text:
                return f"An invitation is valid for 7 days [{n}]."
        return REFUSAL

    async def answer(self, request: Request, sent: Sent) -> Response:
        """Records a request and answers it as the mode has it, in the stub's protocol."""
        self.sent.append(sent)
        if self.mode == "error":
            return JSONResponse(self.error_body(), status_code=500)
        if self.mode == "hang":
            await request.receive()  # the body was read: this returns when the client hangs up
            self.hung_up.put(self.mode)
            return Response(status_code=499)
        reply = self.reply(sent.prompt)
        if sent.streamed:
            events = self.stream(sent.model, reply)
            return StreamingResponse(events, media_type="text/event-stream")
        return JSONResponse(self.whole(sent.model, reply))

    def error_body(self) -> dict[str, Any]:
        raise NotImplementedError

    def whole(self, model: str, reply: str) -> dict[str, Any]:
        """The body of an answer that is not streamed."""
        raise NotImplementedError

    def stream(self, model: str, reply: str) -> AsyncIterator[str]:
        """The events of a streamed answer."""
        raise NotImplementedError

    async def pieces(self, reply: str) -> AsyncIterator[str]:
        """The reply as the mode streams it (see the class docstring)."""
        mode = self.mode
        # Three characters a piece: markers arrive split across chunks, as real models send them.
        pieces = [reply[i : i + 3] for i in range(0, len(reply), 3)]
        try:
            for i, piece in enumerate(pieces):
                if mode == "stall" and i == 2:
                    await anyio.Event().wait()
                if mode == "drop" and i == 2:
                    raise ConnectionAbortedError("the stub drops the connection mid-stream")
                yield piece
            while mode == "trickle":
                # Pacing, not synchronisation: a model that keeps the stream alive, never ending.
                await anyio.sleep(self.pace)
                yield " and"
        except anyio.get_cancelled_exc_class():
            self.hung_up.put(mode)  # Starlette cancels the body when the client disconnects
            raise

    def app(self) -> FastAPI:
        raise NotImplementedError


def _texts(parts: Any) -> str:
    """Message content as text: a string, or a list of text blocks (Anthropic's ``text``
    blocks, Gemini's ``parts``)."""
    if isinstance(parts, str):
        return parts
    return "".join(str(part.get("text", "")) for part in parts or [])


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ")


class OpenAIStub(StubModel):
    provider = "openai"

    def base_url(self, url: str) -> str:
        return f"{url}/v1"

    def error_body(self) -> dict[str, Any]:
        return {"error": {"message": LEAKY_ERROR, "type": "server_error"}}

    @staticmethod
    def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> str:
        data = {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return f"data: {json.dumps(data)}\n\n"

    def whole(self, model: str, reply: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": reply}
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }

    async def stream(self, model: str, reply: str) -> AsyncIterator[str]:
        yield self.chunk(model, {"role": "assistant", "content": ""})
        async for piece in self.pieces(reply):
            yield self.chunk(model, {"content": piece})
        yield self.chunk(model, {}, "stop")
        yield "data: [DONE]\n\n"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Response:
            body = await request.json()
            messages = body["messages"]
            system = " ".join(m["content"] for m in messages if m["role"] == "system")
            key = _bearer(request)
            prompt = _texts(messages[-1]["content"])
            # The official SDK's name for it; OpenAI-compatible servers also take max_tokens.
            limit = body.get("max_completion_tokens", body.get("max_tokens"))
            sent = Sent(body["model"], bool(body.get("stream")), system, prompt, key, limit)
            return await self.answer(request, sent)

        return app


class AnthropicStub(StubModel):
    provider = "anthropic"

    def error_body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": "api_error", "message": LEAKY_ERROR}}

    @staticmethod
    def message(model: str, content: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
        return {
            "id": "msg_stub",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 120, "output_tokens": 0 if stop is None else 12},
        }

    @staticmethod
    def event(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    def whole(self, model: str, reply: str) -> dict[str, Any]:
        return self.message(model, [{"type": "text", "text": reply}], "end_turn")

    async def stream(self, model: str, reply: str) -> AsyncIterator[str]:
        yield self.event("message_start", {"message": self.message(model, [], None)})
        block = {"type": "text", "text": ""}
        yield self.event("content_block_start", {"index": 0, "content_block": block})
        yield self.event("ping", {})
        async for piece in self.pieces(reply):
            delta = {"type": "text_delta", "text": piece}
            yield self.event("content_block_delta", {"index": 0, "delta": delta})
        yield self.event("content_block_stop", {"index": 0})
        stop = {"stop_reason": "end_turn", "stop_sequence": None}
        yield self.event("message_delta", {"delta": stop, "usage": {"output_tokens": 12}})
        yield self.event("message_stop", {})

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/messages")
        async def messages(request: Request) -> Response:
            body = await request.json()
            # The API takes the key as X-Api-Key or, as this SDK sends it, a bearer token.
            key = request.headers.get("x-api-key") or _bearer(request)
            prompt = _texts(body["messages"][-1]["content"])
            system = _texts(body.get("system"))
            limit = body.get("max_tokens")
            sent = Sent(body["model"], bool(body.get("stream")), system, prompt, key, limit)
            return await self.answer(request, sent)

        return app


class GeminiStub(StubModel):
    provider = "gemini"

    def error_body(self) -> dict[str, Any]:
        return {"error": {"code": 500, "message": LEAKY_ERROR, "status": "INTERNAL"}}

    @staticmethod
    def response(model: str, text: str, finish: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
        candidate |= {"index": 0} | ({"finishReason": finish} if finish else {})
        usage = {"promptTokenCount": 120, "candidatesTokenCount": 12, "totalTokenCount": 132}
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}

    def whole(self, model: str, reply: str) -> dict[str, Any]:
        return self.response(model, reply, "STOP")

    async def stream(self, model: str, reply: str) -> AsyncIterator[str]:
        async for piece in self.pieces(reply):
            yield f"data: {json.dumps(self.response(model, piece, None))}\r\n\r\n"
        yield f"data: {json.dumps(self.response(model, '', 'STOP'))}\r\n\r\n"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1beta/models/{call}")
        async def generate(call: str, request: Request) -> Response:
            model, _, method = call.partition(":")
            streamed = method == "streamGenerateContent"
            if method not in {"generateContent", "streamGenerateContent"} or (
                streamed and request.query_params.get("alt") != "sse"
            ):
                return JSONResponse({"error": {"code": 404, "status": "NOT_FOUND"}}, 404)
            body = await request.json()
            system = _texts((body.get("systemInstruction") or {}).get("parts"))
            prompt = _texts(body["contents"][-1]["parts"])
            key = request.headers.get("x-goog-api-key", "")
            limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
            sent = Sent(model, streamed, system, prompt, key, limit)
            return await self.answer(request, sent)

        return app


STUBS: dict[str, type[StubModel]] = {
    stub.provider: stub for stub in (OpenAIStub, AnthropicStub, GeminiStub)
}


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
