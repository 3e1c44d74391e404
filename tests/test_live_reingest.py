"""A running service follows ingests made by other processes of the same home: new text is
found, removed text is gone, and no request fails while it happens (embedded Chroma and a
Chroma server alike)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from queue import Empty

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.settings import Settings
from tests.chroma_helpers import ChromaServer
from tests.cli import citewise_env, run_json, watching

# Made-up words: a search for one finds only the document that holds it.
WORDS = ["quokkafern", "zibbletop", "marrowlint", "plovercask", "thistlewump", "gorsebrine"]


def page(title: str, word: str) -> str:
    return f"# {title}\n\nThe {word} setting controls how invoices are grouped each month.\n"


@pytest.fixture(params=["embedded", "server"])
def env(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    cache_dir: Path,
    redis_url: str,
    redis_prefix: str,
) -> dict[str, str]:
    extra = {"CITEWISE_REDIS_URL": redis_url, "CITEWISE_REDIS_PREFIX": redis_prefix}
    if request.param == "server":
        server: ChromaServer = request.getfixturevalue("chroma_server")
        extra |= {"CITEWISE_CHROMA_URL": server.url, "CITEWISE_BM25_SYNC_S": "0"}
        extra |= {"NO_PROXY": "127.0.0.1"}  # the one address the subprocesses may reach
    return citewise_env(tmp_path / "home", cache_dir, **extra)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for n, word in enumerate(WORDS[:3]):
        (folder / f"page-{n}.md").write_text(page(f"Page {n}", word), encoding="utf-8")
    return folder


def settings_of(env: dict[str, str]) -> Settings:
    values = {
        "home": env["CITEWISE_HOME"],
        "cache_dir": env["CITEWISE_CACHE_DIR"],
        "redis_url": env["CITEWISE_REDIS_URL"],
        "redis_prefix": env["CITEWISE_REDIS_PREFIX"],
        # The asking thread is a flood from one address: this test is about answers, not limits.
        "rate_limit_search_per_ip": "none",
        "rate_limit_ask_per_ip": "none",
    }
    if "CITEWISE_CHROMA_URL" in env:
        values |= {"chroma_url": env["CITEWISE_CHROMA_URL"], "bm25_sync_s": 0}
    return Settings(**values)


@pytest.fixture
def client(env: dict[str, str], docs: Path) -> Iterator[TestClient]:
    """The service, in this process, over a home that a first ingest (another process) made."""
    code, report = run_json("ingest", str(docs), "--kb", "live", env=env)
    assert code == 0 and report["files_added"] == 3, report
    with TestClient(create_app(settings_of(env)), raise_server_exceptions=False) as client:
        yield client


def sources_for(client: TestClient, word: str) -> list[str]:
    response = client.post("/v1/search", json={"query": word, "kb": "live", "k": 3})
    assert response.status_code == 200, response.text
    return [h["source"] for h in response.json()["hits"] if word in h["text"]]


class Asker:
    """Asks and searches in a loop on a thread until stopped; keeps every status code."""

    def __init__(self, client: TestClient) -> None:
        self._client = client
        self._stop = threading.Event()
        self.statuses: list[int] = []
        self._thread = threading.Thread(target=self._loop)

    def __enter__(self) -> Asker:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            word = WORDS[n % len(WORDS)]
            n += 1
            asked = self._client.post(
                "/v1/ask", json={"question": f"What does the {word} setting do?", "kb": "live"}
            )
            searched = self._client.post("/v1/search", json={"query": word, "kb": "live"})
            self.statuses += [asked.status_code, searched.status_code]


def test_a_running_service_follows_re_ingests_by_another_process(
    client: TestClient, env: dict[str, str], docs: Path
) -> None:
    assert sources_for(client, WORDS[0]) == ["page-0.md"]  # the service has read the store
    with Asker(client) as asker:
        for round_ in range(3):
            old, new = WORDS[round_], WORDS[round_ + 3]
            # Edit one page (its old word goes, a new one comes), delete one, add one.
            (docs / f"page-{round_}.md").write_text(page(f"Page {round_}", new), "utf-8")
            code, report = run_json("ingest", str(docs), "--kb", "live", env=env)
            assert code == 0 and report["files_changed"] == 1, report
            assert sources_for(client, new) == [f"page-{round_}.md"]
            assert sources_for(client, old) == []
        (docs / "page-1.md").unlink()
        (docs / "extra.md").write_text(page("Extra", "brackenwhisk"), "utf-8")
        code, report = run_json("ingest", str(docs), "--kb", "live", env=env)
        assert code == 0 and report["files_deleted"] == 1 and report["files_added"] == 1, report
        assert sources_for(client, WORDS[4]) == []  # page-1 held it after the edit
        assert sources_for(client, "brackenwhisk") == ["extra.md"]
    assert asker.statuses, "the asking thread made no request"
    assert all(status == 200 for status in asker.statuses), sorted(set(asker.statuses))
    question = "What does the brackenwhisk setting control?"
    answer = client.post("/v1/ask", json={"question": question, "kb": "live"})
    assert answer.status_code == 200
    assert [c["source"] for c in answer.json()["citations"]] == ["extra.md"]


def test_a_running_service_follows_ingest_watch(
    client: TestClient, env: dict[str, str], docs: Path
) -> None:
    quick = env | {"CITEWISE_WATCH_DEBOUNCE_MS": "100"}
    with watching(str(docs), "--kb", "live", env=quick) as watcher:
        try:
            first = watcher.next_report(timeout=300)  # the run --watch starts with
            assert first["files_unchanged"] == 3, first
            watcher.wait_until_armed()
            for round_ in range(2):
                new = WORDS[round_ + 3]
                (docs / f"page-{round_}.md").write_text(page(f"Page {round_}", new), "utf-8")
                report = watcher.next_report()
                assert report["files_changed"] == 1, report
                assert sources_for(client, new) == [f"page-{round_}.md"]
                assert sources_for(client, WORDS[round_]) == []
        except Empty:
            pytest.fail("the watcher printed no report in time")


def test_a_chunk_the_store_cannot_return_is_skipped_and_counted(
    tmp_path: Path, cache_dir: Path, docs: Path
) -> None:
    from citewise import metrics
    from citewise.wiring import build_store

    env = citewise_env(tmp_path / "home", cache_dir, CITEWISE_REDIS_URL="off")
    assert run_json("ingest", str(docs), "--kb", "live", env=env)[0] == 0
    store = build_store(Settings(home=tmp_path / "home", cache_dir=cache_dir))
    knowledge_base = store.opened("live")
    before = set(knowledge_base.ids())
    (docs / "new.md").write_text(page("New", "brackenwhisk"), "utf-8")
    assert run_json("ingest", str(docs), "--kb", "live", env=env)[0] == 0  # another process
    added = (
        set(build_store(Settings(home=tmp_path / "home", cache_dir=cache_dir)).opened("live").ids())
        - before
    )
    assert len(added) == 1
    counted = metrics.STORE_MISSING_CHUNKS.labels("live")
    skipped_before = counted._value.get()

    fetched = knowledge_base.fetch([*sorted(before), *added])  # this view predates the ingest
    assert set(fetched) == before
    assert knowledge_base.view_is_stale
    assert counted._value.get() == skipped_before + 1

    renewed = store.opened("live")  # the next search reads the store anew
    assert renewed is not knowledge_base
    assert set(renewed.fetch([*sorted(before), *added])) == before | added
