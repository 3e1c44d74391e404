"""Knowledge bases and documents managed for real: listed, shown and deleted through the CLI
(in subprocesses) and over HTTP (admin keys), with embedded Chroma and the test Redis; a
deleted document is gone from search, answers and the answer cache."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.search.embeddings import LocalEmbeddings
from citewise.search.store import ChunkStore
from citewise.settings import Settings
from citewise.wiring import build_lexical, build_store
from ingest.locks import kb_lock
from ingest.management import document_id
from ingest.manifest import Manifest
from ingest.pipeline import IngestPipeline
from tests.answer_helpers import PARROT_DOC
from tests.cli import citewise_env, run, run_json

ADMIN_KEY = "admin-key-manage-0123456789"
QUERY_KEY = "query-key-manage-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
QUERY = {"Authorization": f"Bearer {QUERY_KEY}"}

# Made-up words: a search for one finds only the document that holds it.
PAGES = {
    "guide/setup.md": "# Setup\n\nThe quokkafern switch turns on monthly invoice grouping.\n",
    "guide/usage.md": "# Usage\n\nPress the zibbletop button to send reminders to customers.\n",
    "faq.md": "# FAQ\n\nThe marrowlint report lists every unpaid invoice of a quarter.\n",
    "pets.md": PARROT_DOC,
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "handbook"
    for path, text in PAGES.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text, encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"%PDF-garbage")
    return folder


@pytest.fixture
def settings(tmp_path: Path, cache_dir: Path, redis_url: str, redis_prefix: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        cache_dir=cache_dir,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        admin_keys=ADMIN_KEY,
        query_keys=QUERY_KEY,
    )


@pytest.fixture
def env(settings: Settings, cache_dir: Path) -> dict[str, str]:
    return citewise_env(
        settings.core.home,
        cache_dir,
        CITEWISE_REDIS_URL=str(settings.redis.url),
        CITEWISE_REDIS_PREFIX=settings.redis.prefix,
    )


def ingest(settings: Settings, embeddings: LocalEmbeddings, folder: Path, kb: str) -> Any:
    return IngestPipeline(settings, build_store(settings), embeddings).run([folder], kb)


@pytest.fixture
def client(settings: Settings, corpus: Path, embeddings: LocalEmbeddings) -> Iterator[TestClient]:
    report = ingest(settings, embeddings, corpus, "default")
    assert [f.path for f in report.failures] == ["broken.pdf"]
    with TestClient(create_app(settings)) as client:
        yield client


def store_of(settings: Settings) -> ChunkStore:
    """The store as it is on disk now, whatever other processes wrote (``fresh_view``)."""
    store = build_store(settings)
    store.renew()
    return store


def chunk_sources(settings: Settings, kb: str = "default") -> set[str]:
    _, metadatas = store_of(settings).knowledge_base(kb).ids_and_metadatas()
    return {str(m["source"]) for m in metadatas}


def bm25_sources(settings: Settings, kb: str = "default") -> set[str]:
    return {str(m["source"]) for m in build_lexical(settings).load(kb).metadatas}


# --- the CLI -------------------------------------------------------------------------------


def test_cli_lists_shows_and_deletes(
    settings: Settings,
    env: dict[str, str],
    corpus: Path,
    embeddings: LocalEmbeddings,
    tmp_path: Path,
) -> None:
    ingest(settings, embeddings, corpus, "default")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "faq.md").write_text("# Other FAQ\n\nThe plovercask limit.\n", encoding="utf-8")
    ingest(settings, embeddings, extra, "default")  # a second source: keys "extra/..."
    (settings.uploads_path / "default").mkdir(parents=True)
    (settings.uploads_path / "default" / "uploaded.md").write_text("# Up\n\nText.\n", "utf-8")

    code, listed = run_json("kb", "list", env=env)
    assert code == 0
    [kb] = listed["knowledge_bases"]
    assert kb["name"] == "default" and kb["status"] == "ready"
    assert kb["sources"] == [
        {"name": "handbook", "folder": "handbook", "root": str(corpus.resolve())},
        {"name": "extra", "folder": "extra", "root": str(extra.resolve())},
    ]
    assert kb["documents"] == 5
    assert kb["chunks"] == len(store_of(settings).knowledge_base("default").ids())
    assert kb["embedding_model"] == settings.embedding.model
    assert kb["corpus_version"] == build_lexical(settings).current_generation("default")
    assert kb["last_ingest_at"] > 0

    code, docs = run_json("docs", "list", env=env)
    assert code == 0
    by_path = {d["path"]: d for d in docs["documents"]}
    assert list(by_path) == sorted(by_path)
    assert set(by_path) == {*PAGES, "broken.pdf", "extra/faq.md"}
    setup = by_path["guide/setup.md"]
    assert setup["id"] == document_id("default", "guide/setup.md") and len(setup["id"]) == 16
    assert setup["source"] == "handbook" and setup["title"] == "Setup"
    assert setup["status"] == "ok" and setup["error"] is None and setup["chunks"] == 1
    assert setup["bytes"] == len(PAGES["guide/setup.md"].encode())
    assert len(setup["content_hash"]) == 64 and setup["ingested_at"] > 0
    broken = by_path["broken.pdf"]
    assert broken["status"] == "failed" and broken["error"] and broken["chunks"] == 0
    assert by_path["extra/faq.md"]["source"] == "extra"

    code, only = run_json("docs", "list", "--prefix", "guide/", env=env)
    assert [d["path"] for d in only["documents"]] == ["guide/setup.md", "guide/usage.md"]
    code, only = run_json("docs", "list", "--source", "extra", env=env)
    assert [d["path"] for d in only["documents"]] == ["extra/faq.md"]

    pets = by_path["pets.md"]
    code, shown = run_json("docs", "show", pets["id"], env=env)
    assert code == 0 and shown["document"] == pets
    assert [c["chunk_index"] for c in shown["chunks"]] == list(range(pets["chunks"]))
    assert "Captain Biscuit" in " ".join(c["text"] for c in shown["chunks"])
    assert all(c["metadata"]["source"] == "pets.md" for c in shown["chunks"])
    text = run("docs", "show", pets["id"], env=env)
    assert text.returncode == 0 and "Captain Biscuit" in text.stdout

    # By id, then by path; the corpus version changes with each.
    code, deleted = run_json("docs", "delete", pets["id"], env=env)
    assert code == 0 and deleted["deleted"] == pets and deleted["chunks_deleted"] == pets["chunks"]
    assert deleted["corpus_version"] != kb["corpus_version"]
    assert deleted["answer_cache"] == "retired"
    code, again = run_json("docs", "delete", "--path", "guide/usage.md", env=env)
    assert code == 0 and again["deleted"]["path"] == "guide/usage.md"
    assert "pets.md" not in chunk_sources(settings) | bm25_sources(settings)
    assert "guide/usage.md" not in chunk_sources(settings) | bm25_sources(settings)
    assert "faq.md" in chunk_sources(settings) and "faq.md" in bm25_sources(settings)
    code, docs = run_json("docs", "list", env=env)
    assert {d["path"] for d in docs["documents"]} == {
        "guide/setup.md", "faq.md", "broken.pdf", "extra/faq.md"
    }  # fmt: skip
    code, error = run_json("docs", "delete", pets["id"], env=env)
    assert code == 1 and error["error"]["code"] == "document_not_found"

    # The files are still there: the next ingest of their folder adds them again.
    code, report = run_json("ingest", str(corpus), env=env)
    assert code == 1 and sorted(report["added"]) == ["guide/usage.md", "pets.md"]  # broken.pdf
    assert "pets.md" in chunk_sources(settings)

    code, gone = run_json("kb", "delete", "default", env=env)
    assert code == 0 and gone["deleted"] and gone["documents"] == 5
    assert not store_of(settings).exists("default")
    assert build_lexical(settings).current_generation("default") is None
    assert not (settings.lexical_path / "default").exists()
    assert not (settings.uploads_path / "default").exists()
    assert corpus.exists() and extra.exists()  # the folders it was ingested from are not touched
    with Manifest.open(settings.manifest_path, "default") as manifest:
        assert not manifest.holds_anything()
    assert run_json("kb", "list", env=env) == (0, {"knowledge_bases": []})
    code, error = run_json("kb", "delete", "default", env=env)
    assert code == 1 and error["error"]["code"] == "kb_not_found"
    code, error = run_json("docs", "list", env=env)
    assert code == 1 and error["error"]["code"] == "kb_not_found"
    code, error = run_json("docs", "list", "--kb", "Bad Name!", env=env)
    assert code == 2 and error["error"]["code"] == "invalid_kb_name"


def test_cli_delete_is_refused_while_an_ingest_holds_the_knowledge_base(
    settings: Settings, env: dict[str, str], corpus: Path, embeddings: LocalEmbeddings
) -> None:
    ingest(settings, embeddings, corpus, "default")
    with kb_lock(settings, "default", "held by the test"):
        code, error = run_json("kb", "delete", "default", env=env)
    assert code == 1 and error["error"]["code"] == "kb_busy"
    assert build_store(settings).exists("default")


# --- HTTP ----------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/v1/kbs"),
    ("DELETE", "/v1/kbs/default"),
    ("GET", "/v1/kbs/default/documents"),
    ("GET", "/v1/kbs/default/documents/0123456789abcdef"),
    ("DELETE", "/v1/kbs/default/documents/0123456789abcdef"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_http_needs_an_admin_key(client: TestClient, method: str, path: str) -> None:
    missing = client.request(method, path)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    wrong = client.request(method, path, headers=QUERY)
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    assert client.get("/v1/kbs/default/documents", headers=ADMIN).status_code == 200


def test_http_lists_pages_and_shows(client: TestClient, corpus: Path) -> None:
    listed = client.get("/v1/kbs", headers=ADMIN)
    assert listed.status_code == 200
    [kb] = listed.json()["knowledge_bases"]
    assert kb["sources"] == [{"name": "handbook", "folder": "handbook"}]
    assert str(corpus.parent) not in listed.text  # no absolute server path, anywhere
    assert kb["documents"] == 4 and kb["chunks"] > 4 and kb["corpus_version"]

    paths, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/kbs/default/documents", params=params, headers=ADMIN).json()
        paths += [d["path"] for d in page["documents"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and paths == sorted([*PAGES, "broken.pdf"])
    assert str(corpus.parent) not in str(paths)
    page = client.get(
        "/v1/kbs/default/documents", params={"prefix": "guide/", "source": "handbook"},
        headers=ADMIN,
    ).json()  # fmt: skip
    assert [d["path"] for d in page["documents"]] == ["guide/setup.md", "guide/usage.md"]
    bad = client.get("/v1/kbs/default/documents", params={"cursor": "%%%"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"

    doc_id = document_id("default", "guide/usage.md")
    shown = client.get(f"/v1/kbs/default/documents/{doc_id}", headers=ADMIN)
    assert shown.status_code == 200
    body = shown.json()
    assert body["document"]["path"] == "guide/usage.md" and body["document"]["title"] == "Usage"
    assert body["chunks"][0]["chunk_index"] == 0 and "zibbletop" in body["chunks"][0]["text"]

    for path, code in [
        ("/v1/kbs/default/documents/0123456789abcdef", "document_not_found"),
        ("/v1/kbs/nothing-here/documents", "kb_not_found"),
        ("/v1/kbs/nothing-here/documents/0123456789abcdef", "kb_not_found"),
    ]:
        response = client.get(path, headers=ADMIN)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
    for path, code in [
        ("/v1/kbs/default/documents/0123456789abcdef", "document_not_found"),
        ("/v1/kbs/nothing-here", "kb_not_found"),
    ]:
        response = client.delete(path, headers=ADMIN)
        assert response.status_code == 404 and response.json()["error"]["code"] == code
    response = client.get("/v1/kbs/Bad%20Name/documents", headers=ADMIN)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_kb_name"


def ask(client: TestClient, question: str) -> tuple[str, dict[str, Any]]:
    response = client.post("/v1/ask", json={"question": question}, headers=QUERY)
    assert response.status_code == 200, response.text
    return response.headers["X-Citewise-Cache"], response.json()


def search_sources(client: TestClient, query: str) -> list[str]:
    response = client.post("/v1/search", json={"query": query, "k": 10}, headers=QUERY)
    assert response.status_code == 200, response.text
    return [h["source"] for h in response.json()["hits"]]


def test_a_deleted_document_leaves_search_answers_and_the_cache(
    client: TestClient, env: dict[str, str]
) -> None:
    question = "What is the office parrot called?"
    cache, first = ask(client, question)
    assert cache == "miss" and "pets.md" in {c["source"] for c in first["citations"]}
    assert ask(client, question)[0] == "hit"
    assert "pets.md" in search_sources(client, "Captain Biscuit parrot")

    doc_id = document_id("default", "pets.md")
    deleted = client.delete(f"/v1/kbs/default/documents/{doc_id}", headers=ADMIN)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted"]["path"] == "pets.md" and deleted.json()["chunks_deleted"]

    cache, after = ask(client, question)
    assert cache != "hit" and after["cached"] is False
    assert "pets.md" not in {c["source"] for c in after["citations"]}
    assert "pets.md" not in {s["source"] for s in after["sources"]}
    assert "pets.md" not in search_sources(client, "Captain Biscuit parrot")
    gone = client.get(f"/v1/kbs/default/documents/{doc_id}", headers=ADMIN)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "document_not_found"

    # Deleted by another process (the CLI) while this service runs: it follows at once.
    assert "guide/usage.md" in search_sources(client, "zibbletop button")
    cache, cited = ask(client, "What does the zibbletop button do?")
    assert "guide/usage.md" in {c["source"] for c in cited["citations"]}
    code, _ = run_json("docs", "delete", "--path", "guide/usage.md", env=env)
    assert code == 0
    assert "guide/usage.md" not in search_sources(client, "zibbletop button")
    cache, after = ask(client, "What does the zibbletop button do?")
    assert cache != "hit" and "guide/usage.md" not in {c["source"] for c in after["citations"]}


def test_a_deleted_knowledge_base_is_gone_everywhere(
    client: TestClient, settings: Settings, embeddings: LocalEmbeddings, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "note.md").write_text("# Note\n\nThe thistlewump rule.\n", encoding="utf-8")
    ingest(settings, embeddings, other, "other")
    question = "What is the office parrot called?"
    assert ask(client, question)[0] == "miss" and ask(client, question)[0] == "hit"
    models = client.get("/v1/models", headers=QUERY).json()["data"]
    assert {m["id"] for m in models} == {"default", "other"}

    with kb_lock(settings, "default", "held by the test"):
        busy = client.delete("/v1/kbs/default", headers=ADMIN)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "kb_busy"

    deleted = client.delete("/v1/kbs/default", headers=ADMIN)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {
        "kb": "default",
        "deleted": True,
        "documents": 4,
        "chunks": deleted.json()["chunks"],
        "answer_cache": "retired",
    }
    assert [m["id"] for m in client.get("/v1/models", headers=QUERY).json()["data"]] == ["other"]
    names = [kb["name"] for kb in client.get("/v1/kbs", headers=ADMIN).json()["knowledge_bases"]]
    assert names == ["other"]
    for response in (
        client.post("/v1/search", json={"query": "parrot"}, headers=QUERY),
        client.post("/v1/ask", json={"question": question}, headers=QUERY),
        client.get("/v1/kbs/default/documents", headers=ADMIN),
        client.delete("/v1/kbs/default", headers=ADMIN),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "kb_not_found"
    assert search_sources_of(client, "other", "thistlewump") == ["note.md"]

    # A new knowledge base under the same name starts empty: nothing of the old one answers.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(other / "note.md", fresh / "note.md")
    ingest(settings, embeddings, fresh, "default")
    assert chunk_sources(settings) == {"note.md"}
    cache, answer = ask(client, question)
    assert cache != "hit" and "pets.md" not in {c["source"] for c in answer["citations"]}


def search_sources_of(client: TestClient, kb: str, query: str) -> list[str]:
    response = client.post("/v1/search", json={"query": query, "kb": kb, "k": 3}, headers=QUERY)
    assert response.status_code == 200, response.text
    return sorted({h["source"] for h in response.json()["hits"]})


def test_a_serving_copy_of_bm25_follows_its_knowledge_base_out_of_the_store(
    settings: Settings, corpus: Path, embeddings: LocalEmbeddings
) -> None:
    """With a Chroma server, replicas keep their own BM25 copies: one of a knowledge base gone
    from the store is dropped, and with it the corpus version its cached answers are under."""
    from citewise.search.lexical_sync import LexicalSync

    ingest(settings, embeddings, corpus, "default")
    lexical, store = build_lexical(settings), build_store(settings)
    sync = LexicalSync(lexical, store, interval_s=0)
    sync.refresh("default")
    assert lexical.current_generation("default") is not None
    store.drop("default")
    sync.refresh("default")
    assert lexical.current_generation("default") is None
