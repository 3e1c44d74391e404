"""200 answer streams held open together for a minute: no errors, and the memory it costs.

The service runs as it ships (uvicorn subprocess), answering with the `openai` provider pointed
at a local OpenAI-compatible stub that paces its reply over HOLD_S seconds (the only fake: a
hosted model). 200 clients each ask a different question on `/v1/ask/stream` at once, so no
answer is cached or shared, and read their stream to the end. Meanwhile the server's resident
memory is sampled four times a second. Reported: streams that ended with `done`, errors, stream
durations, resident memory before, at the peak and after, and how many of the 200 answers,
all finishing in the same instant, made it into the answer cache (each question is asked again
on `/v1/ask`, with the stub answering at once, and the hits are counted).

Run:  .venv/bin/python bench/sse_streams.py [--streams 200] [--hold 60]
Writes bench/results/sse_streams.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Any

import httpx
import psutil
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "data" / "sample"
REPLY = "An invitation is valid for 7 days [1]. You can resend it from the Users page [1]."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stub_llm(pace: dict[str, float]) -> Starlette:
    """An OpenAI-compatible chat endpoint that spreads its reply over ``pace["hold_s"]``
    seconds (read per request, so the benchmark can speed it up)."""
    pieces = [REPLY[i : i + 4] for i in range(0, len(REPLY), 4)]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        body = {"id": "stub", "object": "chat.completion.chunk", "created": 0,
                "model": "stub", "choices": [choice]}  # fmt: skip
        return f"data: {json.dumps(body)}\n\n"

    async def completions(request: Request) -> StreamingResponse:
        await request.json()

        hold_s = pace["hold_s"]

        async def stream() -> Any:
            yield chunk({"role": "assistant", "content": ""})
            for piece in pieces:
                await asyncio.sleep(hold_s / len(pieces))  # a slow model, not synchronisation
                yield chunk({"content": piece})
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def question(n: int) -> dict[str, str]:
    return {"question": f"How long is an invitation valid? (reader {n})"}


async def one_stream(client: httpx.AsyncClient, n: int) -> dict[str, Any]:
    started = time.perf_counter()
    body = question(n)
    last = ""
    try:
        async with client.stream("POST", "/v1/ask/stream", json=body) as response:
            if response.status_code != 200:
                return {"ok": False, "error": f"HTTP {response.status_code}"}
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    last = line.removeprefix("event: ")
    except httpx.HTTPError as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": last == "done", "error": None if last == "done" else f"ended with {last!r}",
            "seconds": time.perf_counter() - started}  # fmt: skip


async def drive(url: str, streams: int) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        return list(await asyncio.gather(*(one_stream(client, n) for n in range(streams))))


def count_cached(url: str, streams: int) -> int:
    """How many of the streamed answers a repeated question finds in the answer cache."""
    with httpx.Client(base_url=url, timeout=60) as client:
        headers = [client.post("/v1/ask", json=question(n)).headers for n in range(streams)]
    return sum(1 for h in headers if h.get("x-citewise-cache") == "hit")


def rss_mb(process: psutil.Process) -> float:
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return float(total) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--hold", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sse_streams.json")
    args = parser.parse_args()

    stub_port = free_port()
    pace = {"hold_s": args.hold}
    stub = uvicorn.Server(
        uvicorn.Config(stub_llm(pace), port=stub_port, log_level="warning", lifespan="off")
    )
    threading.Thread(target=stub.run, daemon=True).start()

    work = Path(tempfile.mkdtemp(prefix="citewise-sse-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITEWISE_")}
        env |= {
            "CITEWISE_HOME": str(work / "home"),
            "CITEWISE_ANSWER_PROVIDER": "openai",
            "CITEWISE_LLM_BASE_URL": f"http://127.0.0.1:{stub_port}/v1",
            "CITEWISE_LLM_API_KEY": "unused",
            "CITEWISE_LLM_TIMEOUT_S": str(args.hold * 2),
            "CITEWISE_RATE_LIMIT_ASK_PER_IP": "none",
        }
        subprocess.run(
            [sys.executable, "-m", "cli", "ingest", str(SAMPLE / "account"), "--json"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            env=env, cwd=HERE.parent,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the service did not start")
            time.sleep(0.3)

        process = psutil.Process(server.pid)
        baseline = rss_mb(process)
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(rss_mb(process))
                done.wait(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        results = asyncio.run(drive(url, args.streams))
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
        after = rss_mb(process)
        pace["hold_s"] = 0.0  # a miss below is answered at once
        cached = count_cached(url, args.streams)

        durations = [r["seconds"] for r in results if r["ok"]]
        errors: dict[str, int] = {}
        for r in results:
            if not r["ok"]:
                errors[r["error"]] = errors.get(r["error"], 0) + 1
        peak = max(samples) if samples else after
        result = {
            "streams": args.streams,
            "hold_s": args.hold,
            "completed_with_done": len(durations),
            "errors": errors,
            "wall_seconds": round(elapsed, 1),
            "stream_seconds_p50": round(statistics.median(durations), 1) if durations else None,
            "stream_seconds_max": round(max(durations), 1) if durations else None,
            "rss_mb_before": round(baseline, 1),
            "rss_mb_peak": round(peak, 1),
            "rss_mb_after": round(after, 1),
            "rss_kb_per_stream": round(1024 * (peak - baseline) / args.streams, 1),
            "answers_cached": cached,
            "machine": f"{os.cpu_count()} cores",
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(result, indent=2))
        if errors:
            raise SystemExit("some streams failed")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        stub.should_exit = True
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
