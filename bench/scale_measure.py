"""The measurements ``bench/scale.py`` makes on one knowledge base, over HTTP and in process."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.answer_latency import Client, Neighbours, latency, questions
from bench.serve import percentile, start_service

WARM_UP = 10
SEARCH_C1 = 200
SEARCH_C8 = 400
ASK_C1 = 100
ASK_C8 = 160
HITS = 100
RATIO_BLOCKS = 10
RATIO_PER_BLOCK = 20
SEARCHES_BEFORE_RSS = 1000
STREAMS = 60


def bm25_timings(settings: Any, kb: str) -> dict[str, Any]:
    """Build, rebuild after a 1% change, load: on this knowledge base's own chunks."""
    from bench.lexical import timings
    from citewise.wiring import build_store

    store = build_store(settings)
    started = time.perf_counter()
    ids, texts, metadatas = store.knowledge_base(kb).all_chunks()
    read = time.perf_counter() - started
    store.close()
    return {"read_all_chunks_seconds": round(read, 2), **timings(ids, texts, metadatas)}


class Texts:
    """Texts never sent before in this run: claims first, then claims with a number added."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.used = 0
        self.lock = threading.Lock()

    def take(self, count: int) -> list[str]:
        with self.lock:
            start, self.used = self.used, self.used + count
        return [self._text(n) for n in range(start, start + count)]

    def _text(self, n: int) -> str:
        text = self.texts[n % len(self.texts)]
        return text if n < len(self.texts) else f"{text} ({n // len(self.texts)})"


def concurrently(url: str, path: str, texts: list[str], clients: int) -> list[dict[str, Any]]:
    """``texts`` sent by ``clients`` threads, each on its own keep-alive connection."""
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    key = "query" if path == "/v1/search" else "question"

    def run(part: list[str]) -> None:
        client = Client(url, server_timing=False)
        mine = [client.post(path, {key: t, "k": 5} if key == "query" else {key: t}) for t in part]
        client.connection.close()
        with lock:
            records.extend(mine)

    threads = [threading.Thread(target=run, args=(texts[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = {r["status"] for r in records}
    assert statuses == {200}, f"{path}: statuses {statuses}"
    return records


class Raw:
    """The raw limit, in this process: a new text embedded by the same model, then one Chroma
    query of the service's depth returning the passages' text (what a plain RAG does)."""

    def __init__(self, settings: Any, kb: str) -> None:
        from citewise.wiring import build_embeddings, build_store

        self.embeddings = build_embeddings(settings, for_queries=True)
        self.embeddings.load()
        self.store = build_store(settings)
        self.knowledge_base = self.store.knowledge_base(kb)
        self.depth = settings.retrieval.candidates
        self.samples: list[float] = []

    def sample(self, texts: list[str]) -> None:
        for text in texts:
            started = time.perf_counter()
            self.knowledge_base.search(self.embeddings.embed_query(f"{text} raw"), self.depth)
            self.samples.append(1000 * (time.perf_counter() - started))


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def serve(env: dict[str, str], settings: Any, kb: str, chroma: Any) -> dict[str, Any]:
    """Start the service, drive it, read its memory: the figures of one knowledge base."""
    plan = questions(None, None)
    searches = Texts([t for _, t in plan["search"]])
    asks = Texts([t for _, t in plan["ask"]])
    log = Path(env["CITEWISE_HOME"]).parent / "server.log"
    started = time.perf_counter()
    server, url = start_service(env, log)
    ready = time.perf_counter() - started
    try:
        out: dict[str, Any] = {}
        rss = {"ready": rss_mb(server.pid)}

        def one_by_one(path: str, texts: list[str]) -> list[dict[str, Any]]:
            # A connection per phase: uvicorn closes one left idle for 5 s.
            client = Client(url, server_timing=False)
            key = "query" if path == "/v1/search" else "question"
            body = {"k": 5} if key == "query" else {}
            records = [client.post(path, {key: t, **body}) for t in texts]
            client.connection.close()
            statuses = {r["status"] for r in records}
            assert statuses == {200}, f"{path}: statuses {statuses}"
            return records

        first = one_by_one("/v1/search", searches.take(1))[0]
        first_search = ready + first["ms"] / 1000
        out["start_s"] = {"ready": round(ready, 2), "first_search": round(first_search, 2)}
        rss["after_first_search"] = rss_mb(server.pid)
        # The Chroma server's work is the search's own, not a neighbour's.
        ours = [server.pid, os.getpid()] + ([chroma.pid] if chroma is not None else [])
        neighbours = Neighbours(ours)
        one_by_one("/v1/search", searches.take(WARM_UP))
        done = 1 + WARM_UP
        search: dict[str, Any] = {}
        search["c1"] = latency(one_by_one("/v1/search", searches.take(SEARCH_C1)))
        search["c8"] = latency(concurrently(url, "/v1/search", searches.take(SEARCH_C8), 8))
        done += SEARCH_C1 + SEARCH_C8

        raw = Raw(settings, kb)
        raw.sample(searches.take(3))  # warm: opened, model run once
        ratio_times: list[float] = []
        for _ in range(RATIO_BLOCKS):
            block = one_by_one("/v1/search", searches.take(RATIO_PER_BLOCK))
            ratio_times += [r["ms"] for r in block]
            raw.sample(searches.take(RATIO_PER_BLOCK))
        done += RATIO_BLOCKS * RATIO_PER_BLOCK
        raw.store.close()
        search_p50 = statistics.median(ratio_times)
        raw_p50 = statistics.median(raw.samples)
        out["search_vs_raw"] = {
            "search_p50_ms": round(search_p50, 2),
            "raw_p50_ms": round(raw_p50, 2),
            "raw_p99_ms": round(percentile(raw.samples, 0.99), 2),
            "ratio": round(search_p50 / raw_p50, 3),
            "raw_depth": raw.depth,
        }
        one_by_one("/v1/search", searches.take(max(0, SEARCHES_BEFORE_RSS - done)))
        rss["after_1000_searches"] = rss_mb(server.pid)

        # Then answers: the extractive answerer embeds the passages' sentences, in batches.
        one_by_one("/v1/ask", asks.take(WARM_UP))
        asked = asks.take(ASK_C1)
        misses = one_by_one("/v1/ask", asked)
        assert {r["cache"] for r in misses} == {"miss"}, "asks not all answer-cache misses"
        ask = {"c1": latency(misses)}
        ask["c8"] = latency(concurrently(url, "/v1/ask", asks.take(ASK_C8), 8))
        ask["refused_c1"] = sum(r["refused"] for r in misses)
        hits = one_by_one("/v1/ask", asked[:HITS])
        assert {r["cache"] for r in hits} == {"hit"}, "second asks not all answer-cache hits"
        ask["hit_c1"] = latency(hits)
        rss["after_asks"] = rss_mb(server.pid)
        if chroma is not None:
            rss["chroma_server"] = rss_mb(chroma.pid)
        out |= {"search": search, "ask": ask, "rss_mb": rss}
        out["others_cpu_share"] = neighbours.share()
        return out
    finally:
        server.terminate()
        server.wait(timeout=60)


def first_sse_byte(env: dict[str, str]) -> dict[str, Any]:
    """First byte of ``/v1/ask/stream`` (the sources event, sent before the model is asked)
    and of the model's first words, with the ``openai`` provider on a local stub."""
    import uvicorn

    from bench.serve import free_port
    from tests.llm_stubs import OpenAIStub

    stub = OpenAIStub()
    port = free_port()
    config = uvicorn.Config(stub.app(), port=port, log_level="warning", lifespan="off")
    stub_server = uvicorn.Server(config)
    threading.Thread(target=stub_server.run, daemon=True).start()
    env = env | {
        "CITEWISE_ANSWER_PROVIDER": "openai",
        "CITEWISE_LLM_BASE_URL": stub.base_url(f"http://127.0.0.1:{port}"),
        "CITEWISE_LLM_API_KEY": "unused",
        "CITEWISE_REDIS_PREFIX": env["CITEWISE_REDIS_PREFIX"] + "-stream",
    }
    plan = questions(None, None)
    texts = [t for _, t in plan["ask"]][-(STREAMS + WARM_UP) :]
    server, url = start_service(env, Path(env["CITEWISE_HOME"]).parent / "stream.log")
    try:
        address = urlsplit(url)
        connection = http.client.HTTPConnection(address.hostname or "", address.port)
        firsts, models = [], []
        for n, text in enumerate(texts):
            first, model = _stream_once(connection, text)
            if n >= WARM_UP:
                firsts.append(first)
                models.append(model)
        connection.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
        stub_server.should_exit = True
    return {
        "streams": len(firsts),
        "p50_ms": round(percentile(firsts, 0.5), 2),
        "p99_ms": round(percentile(firsts, 0.99), 2),
        "model_first_words_p50_ms": round(percentile(models, 0.5), 2),
    }


def _stream_once(connection: http.client.HTTPConnection, text: str) -> tuple[float, float]:
    body = json.dumps({"question": text}).encode()
    started = time.perf_counter()
    connection.request("POST", "/v1/ask/stream", body=body,
                       headers={"Content-Type": "application/json"})  # fmt: skip
    response = connection.getresponse()
    assert response.status == 200, response.status
    response.read(1)
    first = 1000 * (time.perf_counter() - started)
    model = first
    while line := response.readline():
        if line.startswith(b"event: delta"):
            model = 1000 * (time.perf_counter() - started)
            break
    response.read()
    return first, model


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def row_line(row: dict[str, Any]) -> str:
    search, ask = row["search"], row["ask"]
    return (
        f"{row['name']}: {row['built']['chunks']:,} chunks; search c1 {search['c1']['p50_ms']}"
        f"/{search['c1']['p99_ms']} ms, c8 {search['c8']['p50_ms']}/{search['c8']['p99_ms']}; "
        f"raw {row['search_vs_raw']['raw_p50_ms']} (x{row['search_vs_raw']['ratio']}); "
        f"ask c1 {ask['c1']['p50_ms']}/{ask['c1']['p99_ms']}, c8 {ask['c8']['p50_ms']}"
        f"/{ask['c8']['p99_ms']}; hit {ask['hit_c1']['p50_ms']}; rss {row['rss_mb']}; "
        f"start {row['start_s']}; sse {row['first_sse_byte']['p50_ms']}; "
        f"disk {row['disk_mb']} MB; bm25 {row['bm25']}"
    )
