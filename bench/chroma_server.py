"""The Chroma server next to the embedded store: what a replica pays for sharing one.

1. starts ``chroma run`` on a free port (data in a temporary folder);
2. ingests ``data/sample`` with the real pipeline twice: into an embedded home and into the
   server (no Redis, so both embed everything);
3. in this process, for each store, searches with query texts never sent before (hybrid, k=5,
   the query embedded each time, as ``/v1/search`` does without the HTTP around it) in
   alternating blocks, so both stores see the same background noise; and, on the same vectors,
   the store calls a search makes: the dense query (ids and distances of the top 50) and the
   read of the k + 3 passages it keeps;
4. measures what a replica adds with a server: the generation check (one metadata read, at
   most every CITEWISE_BM25_SYNC_S per knowledge base) and the first BM25 build of a replica
   with an empty home (all chunks read from the server, tokenised, indexed).

Run:  .venv/bin/python bench/chroma_server.py    Writes bench/results/chroma_server.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import json
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE = REPO / "data" / "sample"
BLOCKS = 16
PER_BLOCK = 25

QUESTIONS = [
    "How long is an invitation valid?",
    "What is the hotel limit per night?",
    "How do I turn on two-factor authentication?",
    "What does error TB-409 mean?",
    "Can I get a refund for an annual plan?",
    "How do I send a payment reminder?",
    "How do I set up a recurring invoice?",
    "How does bank sync work?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_chroma(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    chroma = Path(sys.executable).parent / "chroma"
    log = (folder / "chroma.log").open("wb")
    command = [str(chroma), "run", "--path", str(folder / "data"), "--host", "127.0.0.1"]
    process = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise SystemExit("chroma run did not answer")


def timed_ms(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "samples": len(ordered),
    }


def api_process_rss_mb(settings: Any, url: str) -> dict[str, float]:
    """Resident memory of one API process as it ships (uvicorn, one worker), against the
    server: once ready, and after a few hundred searches (BM25 copy and passages loaded)."""
    import httpx
    import psutil

    port = free_port()
    env = {**os.environ, "CITEWISE_HOME": str(settings.core.home), "CITEWISE_CHROMA_URL": url}
    env |= {"CITEWISE_REDIS_URL": "off", "CITEWISE_CACHE_DIR": str(settings.core.cache_dir)}
    command = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app"]
    command += ["--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=REPO, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("the API did not become ready")
        ready = psutil.Process(server.pid).memory_info().rss / 2**20
        with httpx.Client(base_url=base, timeout=30) as client:
            for n in range(300):
                query = f"{QUESTIONS[n % len(QUESTIONS)]} {n}"
                client.post("/v1/search", json={"query": query}).raise_for_status()
        warm = psutil.Process(server.pid).memory_info().rss / 2**20
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"ready": round(ready, 1), "after_300_searches": round(warm, 1)}


def main() -> None:
    import numpy as np

    from citewise.search.lexical_sync import LexicalSync
    from citewise.settings import Settings
    from citewise.wiring import build_embeddings, build_lexical, build_services, build_store
    from ingest.pipeline import IngestPipeline

    with tempfile.TemporaryDirectory(prefix="citewise-bench-chroma-") as work:
        root = Path(work)
        (root / "server").mkdir()
        process, url = start_chroma(root / "server")
        try:
            common = {"redis_url": "off", "cache_dir": root / "cache"}
            stores = {
                "embedded": Settings(home=root / "embedded", **common),
                "server": Settings(home=root / "ingest", chroma_url=url, **common),
            }
            model = build_embeddings(stores["embedded"])
            ingest_s = {}
            chunks = 0
            for name, settings in stores.items():
                started = time.perf_counter()
                store = build_store(settings)
                report = IngestPipeline(settings, store, model).run([SAMPLE], "default")
                ingest_s[name] = round(time.perf_counter() - started, 2)
                chunks = report.chunks_added
                store.close()
            services = {name: build_services(s) for name, s in stores.items()}
            for built in services.values():
                built.model.load()
                warm = built.retriever.query(QUESTIONS[0], kb="default", k=5)
                built.retriever.search(warm)  # warm: opened, loaded

            search: dict[str, list[float]] = {name: [] for name in services}
            for block in range(BLOCKS):
                for name, built in services.items():
                    for n in range(PER_BLOCK):
                        text = f"{QUESTIONS[n % len(QUESTIONS)]} {name} {block} {n}"
                        search[name].append(
                            timed_ms(
                                lambda t=text, b=built: b.retriever.search(
                                    b.retriever.query(t, kb="default", k=5)
                                )
                            )
                        )

            vectors = [np.asarray(model.embed_query(q), dtype=np.float32) for q in QUESTIONS]
            dense: dict[str, list[float]] = {name: [] for name in services}
            passages: dict[str, list[float]] = {name: [] for name in services}
            for _ in range(25):
                for name, built in services.items():
                    kb = built.store.opened("default")
                    for vector in vectors:
                        dense[name].append(timed_ms(lambda v=vector, k=kb: k.nearest(v, 50)))
                        ids = [i for i, _ in kb.nearest(vector, 8)]
                        passages[name].append(timed_ms(lambda i=ids, k=kb: k.fetch(i)))

            server = services["server"].store
            check = [timed_ms(lambda: server.recorded_generation("default")) for _ in range(200)]
            replica = Settings(home=root / "replica", chroma_url=url, **common)
            sync = LexicalSync(build_lexical(replica), server, 5.0)
            first_build_ms = timed_ms(lambda: sync.refresh("default"))
            assert build_lexical(replica).current_generation("default")
            for built in services.values():
                built.close()
            rss_mb = api_process_rss_mb(replica, url)
        finally:
            process.kill()
            process.wait()

    results = {
        "corpus": f"data/sample ({chunks} chunks)",
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "python": platform.python_version(),
        "chroma_server": "chroma run (same machine, loopback HTTP)",
        "ingest_s": ingest_s,
        "search_hybrid_k5": {name: summary(s) for name, s in search.items()},
        "dense_query_top50": {name: summary(s) for name, s in dense.items()},
        "read_8_passages": {name: summary(s) for name, s in passages.items()},
        "generation_check": summary(check),
        "replica_first_bm25_build_ms": round(first_build_ms, 1),
        "api_process_rss_mb": rss_mb,
    }
    out = HERE / "results" / "chroma_server.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
