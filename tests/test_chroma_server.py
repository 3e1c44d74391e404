"""Citewise against a real Chroma server (`chroma run`): the same ingest, search and answers as
the embedded store; replicas with an empty home that rebuild BM25 from the server and follow
re-ingests; a server that dies, hangs and comes back."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.main import create_app
from citewise.search.embeddings import LocalEmbeddings
from citewise.search.lexical_sync import LexicalSync
from citewise.search.store import UNREACHABLE
from citewise.settings import Settings
from citewise.wiring import build_lexical, build_store
from ingest.pipeline import IngestPipeline
from tests.answer_helpers import PARROT_DOC
from tests.chroma_helpers import ChromaServer
from tests.conftest import SAMPLE

CORPUS = [
    "getting-started/creating-your-account.md",
    "invoices/payment-reminders.md",
    "expenses/mileage-and-per-diem.md",
    "billing/managing-your-subscription.md",
]
REMINDERS = "How do I turn on automatic payment reminders?"
PARROT = "What is the office parrot called?"
SYNC_WAIT_S = 120.0


def server_settings(
    server: ChromaServer, home: Path, cache_dir: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "cache_dir": cache_dir,
        "chroma_url": server.url,
        "chroma_timeout_s": 5.0,
        "bm25_sync_s": 0.0,  # look at the store on every request: no waiting on a clock
        "redis_url": "off",
    }
    return Settings(**(values | overrides))


def ingest(settings: Settings, embeddings: LocalEmbeddings, path: Path, kb: str) -> None:
    store = build_store(settings)
    try:
        report = IngestPipeline(settings, store, embeddings).run([path], kb)
    finally:
        store.close()
    assert report.failures == [] and report.chunks_added + report.chunks_unchanged > 0


def recorded(settings: Settings, kb: str) -> str | None:
    """The generation the last ingest of ``kb`` recorded in the server."""
    store = build_store(settings)
    try:
        return store.recorded_generation(kb)
    finally:
        store.close()


@contextmanager
def app(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def sync_of(client: TestClient) -> LexicalSync:
    sync = client.app.state.services.retriever.sync  # type: ignore[attr-defined]
    assert isinstance(sync, LexicalSync)
    return sync


def search(client: TestClient, query: str, kb: str = "default", mode: str = "hybrid") -> Any:
    response = client.post("/v1/search", json={"query": query, "kb": kb, "mode": mode, "k": 5})
    assert response.status_code == 200, response.text
    return [(h["chunk_id"], round(h["score"], 4)) for h in response.json()["hits"]]


@pytest.mark.parametrize(
    "url",
    ["chroma:8000", "ftp://chroma:8000", "http://chroma:8000/api/v2", "http://u:p@chroma:8000",
     "http://chroma:port"],
)  # fmt: skip
def test_a_chroma_url_that_cannot_work_fails_at_start(url: str, cache_dir: Path) -> None:
    with pytest.raises(ValidationError, match=r"CITEWISE_CHROMA|Chroma credentials"):
        Settings(chroma_url=url, cache_dir=cache_dir)


def test_a_chroma_url_names_the_server(cache_dir: Path) -> None:
    settings = Settings(chroma_url=" https://chroma.example.com/ ", cache_dir=cache_dir)
    assert settings.chroma.url == "https://chroma.example.com" and settings.chroma.server
    assert not Settings(cache_dir=cache_dir).chroma.server


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name in CORPUS:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def primary(
    chroma_server: ChromaServer,
    corpus: Path,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The home of the machine that ingested the corpus into the server as ``default``."""
    home = tmp_path_factory.mktemp("primary")
    ingest(server_settings(chroma_server, home, cache_dir), embeddings, corpus, "default")
    return home


def test_the_server_serves_what_the_embedded_store_serves(
    chroma_server: ChromaServer,
    primary: Path,
    corpus: Path,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    embedded = Settings(home=tmp_path / "embedded", cache_dir=cache_dir, redis_url="off")
    ingest(embedded, embeddings, corpus, "default")
    served = server_settings(chroma_server, primary, cache_dir)
    with app(embedded) as local, app(served) as remote:
        for mode in ("dense", "bm25", "hybrid"):
            assert search(remote, REMINDERS, mode=mode) == search(local, REMINDERS, mode=mode)
        asked = [c.post("/v1/ask", json={"question": REMINDERS}) for c in (local, remote)]
        assert [a.status_code for a in asked] == [200, 200]
        local_answer, remote_answer = (a.json() for a in asked)
        assert remote_answer["answer"] == local_answer["answer"]
        assert not remote_answer["refused"] and remote_answer["citations"]
        assert remote.get("/readyz").json()["status"] == "ready"
    # The ingest recorded in Chroma the generation it published beside itself.
    generation = recorded(served, "default")
    assert generation is not None
    assert generation == build_lexical(served).current_generation("default")


def test_a_replica_with_an_empty_home_rebuilds_bm25_from_the_server(
    chroma_server: ChromaServer,
    primary: Path,
    cache_dir: Path,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    shared = {"redis_url": redis_url, "redis_prefix": redis_prefix}
    first = server_settings(chroma_server, primary, cache_dir, **shared)
    # The token is sent as the Chroma auth header; this server does not check it.
    replica = server_settings(
        chroma_server, tmp_path / "replica", cache_dir, chroma_token="not-checked-here", **shared
    )
    with app(first) as one, app(replica) as two:
        # BM25 alone: a replica without an index would find nothing at all.
        assert search(two, REMINDERS, mode="bm25") == search(one, REMINDERS, mode="bm25") != []
        assert search(two, REMINDERS) == search(one, REMINDERS)
        # Both copies have the ingest's generation, so they key answers alike and share them.
        computed = one.post("/v1/ask", json={"question": REMINDERS})
        shared_answer = two.post("/v1/ask", json={"question": REMINDERS})
    assert computed.headers["x-citewise-cache"] == "miss"
    assert shared_answer.headers["x-citewise-cache"] == "hit"
    assert shared_answer.json()["answer"] == computed.json()["answer"]
    generation = build_lexical(replica).current_generation("default")
    assert generation == recorded(replica, "default")


def test_a_replica_follows_a_reingest(
    chroma_server: ChromaServer,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    docs = tmp_path / "pets"
    docs.mkdir()
    (docs / "office-pets.md").write_text(PARROT_DOC, encoding="utf-8")
    shared = {"redis_url": redis_url, "redis_prefix": redis_prefix}
    ingesting = server_settings(chroma_server, tmp_path / "ingest", cache_dir, **shared)
    ingest(ingesting, embeddings, docs, "pets")
    replica = server_settings(chroma_server, tmp_path / "replica", cache_dir, **shared)
    question = {"question": PARROT, "kb": "pets"}
    with app(replica) as client:
        before = client.post("/v1/ask", json=question)
        assert before.status_code == 200 and "Captain Biscuit" in before.json()["answer"]
        old = build_lexical(replica).current_generation("pets")

        renamed = PARROT_DOC.replace("Captain Biscuit", "Admiral Crumb")
        (docs / "office-pets.md").write_text(renamed, encoding="utf-8")
        ingest(ingesting, embeddings, docs, "pets")
        new = recorded(ingesting, "pets")
        assert new not in (None, old)

        # The next request notices the new generation and rebuilds in the background.
        client.post("/v1/search", json={"query": PARROT, "kb": "pets"})
        assert sync_of(client).wait("pets", SYNC_WAIT_S)
        assert build_lexical(replica).current_generation("pets") == new
        after = client.post("/v1/ask", json=question)
        found = client.post("/v1/search", json={"query": PARROT, "kb": "pets", "mode": "bm25"})
    assert after.status_code == 200
    assert after.headers["x-citewise-cache"] == "miss"  # a new corpus version: a new key
    assert "Admiral Crumb" in after.json()["answer"]
    assert "Admiral Crumb" in " ".join(h["text"] for h in found.json()["hits"])


def test_a_replica_looks_at_the_store_at_most_once_per_interval(
    chroma_server: ChromaServer, embeddings: LocalEmbeddings, cache_dir: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "pets"
    docs.mkdir()
    (docs / "office-pets.md").write_text(PARROT_DOC, encoding="utf-8")
    ingesting = server_settings(chroma_server, tmp_path / "ingest", cache_dir)
    ingest(ingesting, embeddings, docs, "slow")
    replica = server_settings(chroma_server, tmp_path / "replica", cache_dir, bm25_sync_s=3600)
    with app(replica) as client:
        assert search(client, PARROT, kb="slow", mode="bm25")  # built: it had no copy
        first = build_lexical(replica).current_generation("slow")
        (docs / "office-pets.md").write_text(PARROT_DOC + "\nA new line.\n", encoding="utf-8")
        ingest(ingesting, embeddings, docs, "slow")
        assert not sync_of(client).due("slow")
        search(client, PARROT, kb="slow")
        assert sync_of(client).wait("slow", SYNC_WAIT_S)
    # Within the interval the new recording was not even read: the copy is the first one.
    assert build_lexical(replica).current_generation("slow") == first
    assert recorded(ingesting, "slow") != first


@contextmanager
def recording_proxy(target: str, seen: list[dict[str, str]]) -> Iterator[str]:
    """A pass-through HTTP proxy in front of the Chroma server that notes each request's
    headers: what a server (or gateway) that checks a token would see."""

    class Forward(BaseHTTPRequestHandler):
        def relay(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {"Content-Type": self.headers.get("Content-Type") or "application/json"}
            answer = httpx.request(
                self.command, target + self.path, content=body, headers=headers, timeout=30
            )
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("content-type", ""))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = do_DELETE = relay

        def log_message(self, format: str, *args: Any) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=30)


def test_the_token_goes_with_every_request(
    chroma_server: ChromaServer, primary: Path, cache_dir: Path
) -> None:
    seen: list[dict[str, str]] = []
    with recording_proxy(chroma_server.url, seen) as url:
        settings = server_settings(
            chroma_server, primary, cache_dir, chroma_url=url, chroma_token="t0ken-for-chroma"
        )
        store = build_store(settings)
        try:
            assert "default" in store.knowledge_bases()
            assert store.recorded_generation("default")
        finally:
            store.close()
    assert len(seen) >= 4  # heartbeat, identity, tenant and database checks, then ours
    assert {h.get("authorization") for h in seen} == {"Bearer t0ken-for-chroma"}


def assert_unavailable(response: Any, port: int) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {"error": {"code": "store_unavailable", "message": UNREACHABLE}}
    assert str(port) not in response.text


def test_a_dead_server_is_a_503_and_a_restarted_one_serves_again(
    chroma_server: ChromaServer,
    primary: Path,
    cache_dir: Path,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    settings = server_settings(
        chroma_server, primary, cache_dir, redis_url=redis_url, redis_prefix=redis_prefix
    )
    with app(settings) as client:
        assert search(client, REMINDERS)
        assert client.post("/v1/ask", json={"question": REMINDERS}).status_code == 200
        chroma_server.kill()
        try:
            # An answer cached before retrieves nothing: Redis still serves it.
            cached = client.post("/v1/ask", json={"question": REMINDERS})
            assert cached.status_code == 200 and cached.headers["x-citewise-cache"] == "hit"
            assert_unavailable(
                client.post("/v1/search", json={"query": "late fees"}), chroma_server.port
            )
            assert_unavailable(
                client.post("/v1/ask", json={"question": "late fees?"}), chroma_server.port
            )
            assert_unavailable(
                client.post("/v1/ask/stream", json={"question": "late fees?"}),
                chroma_server.port,
            )
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["store_reachable"] is False
            # A replica that starts while the server is down starts, and is not ready.
            with app(server_settings(chroma_server, tmp_path / "late", cache_dir)) as late:
                assert late.get("/readyz").status_code == 503
                assert late.get("/healthz").status_code == 200
                chroma_server.start()
                assert late.get("/readyz").json()["status"] == "ready"
                assert search(late, REMINDERS) == search(client, REMINDERS)
        finally:
            if chroma_server.process is None or chroma_server.process.poll() is not None:
                chroma_server.start()
        assert client.get("/readyz").json()["status"] == "ready"


def test_a_server_that_hangs_is_a_503_after_the_timeout(
    chroma_server: ChromaServer, primary: Path, cache_dir: Path
) -> None:
    settings = server_settings(chroma_server, primary, cache_dir, chroma_timeout_s=1.0)
    with app(settings) as client:
        assert search(client, REMINDERS)
        chroma_server.freeze()
        try:
            started = time.monotonic()
            response = client.post("/v1/search", json={"query": "mileage rate"})
            elapsed = time.monotonic() - started
        finally:
            chroma_server.thaw()
        assert_unavailable(response, chroma_server.port)
        assert elapsed < 10  # two reads at most (the BM25 check, the search), 1 s each
        assert search(client, REMINDERS)
