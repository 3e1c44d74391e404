"""Request ids, JSON logs, Prometheus metrics and /readyz components, through the real app, and
once through ``uvicorn --factory`` in a subprocess beside a ``citewise ingest`` run."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from citewise.logs import HANDLER_NAME, configure_logging
from citewise.search.store import Hit
from citewise.settings import Settings
from ingest.report import IngestReport
from tests.answer_helpers import free_socket, sse_events
from tests.cli import citewise_env, run_json
from tests.redis_helpers import RedisServer

QUERY_KEY = "obs-query-key-0123456789"
ADMIN_KEY = "obs-admin-key-0123456789"
METRICS_KEY = "obs-metrics-key-0123456789"
WIDGET_TOKEN = "obs-widget-token-0123456789"
INVITATION = "How long is an invitation valid?"
CACHE = "x-citewise-cache"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def settings(
    home: Path, cache_dir: Path, redis_url: str, redis_prefix: str
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "home": home,
            "cache_dir": cache_dir,
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
        }
        return Settings(**(values | overrides))

    return make


@contextmanager
def client_for(settings: Settings, generator: Any = None, **options: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings, generator=generator), **options) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return parse_metrics(response.text)


def parse_metrics(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed as one JSON object (any other line fails the test)."""
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert records and all(isinstance(r, dict) for r in records)
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    return records


def access_line(records: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    found = [
        r for r in records if r["logger"] == "citewise.access" and r.get("request_id") == request_id
    ]
    assert len(found) == 1, found
    return found[0]


class BrokenGenerator:
    """An answer provider with a bug: its stream fails with an error Citewise does not expect."""

    async def stream(self, question: str, sources: Sequence[Hit]) -> Any:
        raise RuntimeError("provider bug")
        yield ""  # an async generator, as providers are

    async def condense(self, question: str, history: Sequence[Any]) -> str:
        return question


def test_a_sane_request_id_is_kept_and_any_other_replaced(
    settings: Callable[..., Settings],
) -> None:
    sane = ["edge-7f3a:42.1_x", "a" * 128]
    odd: list[str | bytes] = ["a" * 129, "two words", "<script>", "", "ümlaut".encode("latin-1")]
    with client_for(settings()) as client:
        kept = [client.get("/healthz", headers={"X-Request-Id": s}) for s in sane]
        replaced = [client.get("/healthz", headers={"X-Request-Id": o}) for o in odd]
        fresh = [client.get("/healthz") for _ in range(2)]
    assert [r.headers["x-request-id"] for r in kept] == sane
    generated = [r.headers["x-request-id"] for r in replaced + fresh]
    assert all(GENERATED_ID.fullmatch(g) for g in generated), generated
    assert len(set(generated)) == len(generated)


def test_errors_and_streams_carry_the_request_id_and_so_do_their_log_lines(
    settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    keyed = settings(query_keys=QUERY_KEY)
    with client_for(keyed) as client:
        unauthorized = client.post(
            "/v1/ask", json={"question": INVITATION}, headers={"X-Request-Id": "err-401"}
        )
        invalid = client.post(
            "/v1/ask", json={}, headers={**bearer(QUERY_KEY), "X-Request-Id": "err-422"}
        )
        unknown = client.get("/no/such/page", headers={"X-Request-Id": "err-404"})
        stream = client.post(
            "/v1/ask/stream",
            json={"question": INVITATION},
            headers={**bearer(QUERY_KEY), "X-Request-Id": "stream-1"},
        )
    with client_for(settings(), BrokenGenerator(), raise_server_exceptions=False) as client:
        broken = client.post(
            "/v1/ask", json={"question": INVITATION}, headers={"X-Request-Id": "err-500"}
        )
    for response, status, expected in [
        (unauthorized, 401, "err-401"),
        (invalid, 422, "err-422"),
        (unknown, 404, "err-404"),
        (broken, 500, "err-500"),
        (stream, 200, "stream-1"),
    ]:
        assert response.status_code == status, response.text
        assert response.headers["x-request-id"] == expected
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert [name for name, _ in sse_events(stream.text)][-1] == "done"
    assert broken.json()["error"]["code"] == "internal_error"

    records = json_lines(capsys.readouterr().err)
    failure = [r for r in records if r["message"].startswith("unhandled error")]
    assert len(failure) == 1
    assert failure[0]["request_id"] == "err-500" and failure[0]["level"] == "ERROR"
    assert "RuntimeError: provider bug" in failure[0]["exception"]
    assert access_line(records, "err-500")["status"] == 500
    assert access_line(records, "stream-1")["route"] == "/v1/ask/stream"
    assert access_line(records, "err-404")["route"] == "unmatched"


def test_log_lines_are_json_with_the_request_id_and_never_a_secret(
    settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    body_secret = "hunter2-in-a-request-body"
    widget_id = "obs-widget-4242"
    with client_for(settings(query_keys=QUERY_KEY, admin_keys=ADMIN_KEY)) as client:
        asked = client.post(
            "/v1/ask",
            json={"question": f"{INVITATION} {body_secret}"},
            headers={**bearer(QUERY_KEY), "X-Request-Id": "log-ask"},
        )
        searched = client.post(
            f"/v1/search?api_key={QUERY_KEY}",
            json={"query": "refund window"},
            headers={"X-API-Key": QUERY_KEY, "X-Request-Id": "log-search"},
        )
        widget = client.post(
            "/v1/ask",
            json={"question": INVITATION},
            headers={
                "X-Widget-Token": WIDGET_TOKEN,
                "Origin": "https://docs.example.com",
                "X-Request-Id": "log-widget",
            },
        )
        registered = client.put(
            f"/v1/admin/widgets/{widget_id}",
            json={"origins": ["https://docs.example.com"]},
            headers={"X-API-Key": ADMIN_KEY, "X-Request-Id": "log-admin"},
        )
    assert asked.status_code == 200 and searched.status_code == 200
    # The widget's page is on a site no widget lists yet: refused before its token is read.
    assert widget.status_code == 403 and registered.status_code == 200

    err = capsys.readouterr().err
    records = json_lines(err)
    for secret in (QUERY_KEY, ADMIN_KEY, WIDGET_TOKEN, body_secret):
        assert secret not in err
    ask = access_line(records, "log-ask")
    assert ask["message"].startswith("POST /v1/ask 200 ")
    assert (ask["method"], ask["route"], ask["status"]) == ("POST", "/v1/ask", 200)
    assert ask["duration_ms"] > 0 and ask["client_ip"] == "testclient"
    assert access_line(records, "log-search")["route"] == "/v1/search"
    assert access_line(records, "log-widget")["status"] == 403
    admin = access_line(records, "log-admin")
    assert admin["route"] == "/v1/admin/widgets/{widget_id}"
    assert widget_id not in json.dumps(admin)
    started = [r for r in records if "no query keys" in r["message"] or "Redis:" in r["message"]]
    assert started and all("request_id" not in r for r in started)  # logged outside requests


def test_text_logs_for_a_terminal(
    settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    with client_for(settings(log_format="text", log_level="debug")) as client:
        client.get("/healthz", headers={"X-Request-Id": "text-1"})
    lines = capsys.readouterr().err.splitlines()
    access = [line for line in lines if "citewise.access" in line]
    assert len(access) == 1
    expected = r"INFO +citewise\.access: GET /healthz 200 [\d.]+ms \[request_id=text-1\]$"
    assert re.search(expected, access[0]), access[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(access[0])


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a console's stderr does."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("log_format", "terminal", "as_json"),
    [("auto", False, True), ("auto", True, False), ("text", False, False), ("json", True, True)],
)
def test_auto_is_text_on_a_terminal_and_json_elsewhere(
    log_format: Any, terminal: bool, as_json: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging(log_format, "INFO")
    logging.getLogger("citewise.test").info("ready on %s", "port 8000")
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1
    if as_json:
        assert json_lines(lines[0])[0]["message"] == "ready on port 8000"
    else:
        assert re.search(r" INFO +citewise\.test: ready on port 8000$", lines[0]), lines[0]


def test_metrics_follow_real_requests(settings: Callable[..., Settings]) -> None:
    with client_for(settings()) as client:
        before = scrape(client)
        searches = [client.post("/v1/search", json={"query": "refund window"}) for _ in range(2)]
        first = client.post("/v1/ask", json={"question": INVITATION})
        second = client.post("/v1/ask", json={"question": INVITATION})
        stream = client.post("/v1/ask/stream", json={"question": INVITATION})
        after = scrape(client)
        schema = client.app.openapi()
    assert all(s.status_code == 200 for s in searches)
    assert [r.headers[CACHE] for r in (first, second, stream)] == ["miss", "hit", "hit"]

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "citewise_http_request_duration_seconds_count"
    assert delta(requests, method="POST", route="/v1/search", status_class="2xx") == 2
    assert delta(requests, method="POST", route="/v1/ask", status_class="2xx") == 2
    assert delta(requests, method="POST", route="/v1/ask/stream", status_class="2xx") == 1
    assert delta("citewise_http_request_duration_seconds_sum", method="POST", route="/v1/ask",
                 status_class="2xx") > 0  # fmt: skip
    # Two searches and the one answer computed; the cached ones retrieve nothing.
    assert delta("citewise_retrieval_duration_seconds_count", mode="hybrid") == 3
    assert delta("citewise_generation_first_token_seconds_count", provider="extractive") == 1
    assert delta("citewise_generation_duration_seconds_count", provider="extractive") == 1
    pieces = delta("citewise_generated_pieces_total", provider="extractive")
    characters = delta("citewise_generated_characters_total", provider="extractive")
    assert pieces == len(first.json()["answer"].split())  # the extractive provider: word by word
    assert characters == len(first.json()["answer"])
    cache = "citewise_answer_cache_requests_total"
    assert (delta(cache, result="miss"), delta(cache, result="hit")) == (1, 2)
    assert delta(cache, result="bypass") == 0
    # Queries: the search text (the second search reuses the retriever's vector of it, no
    # lookup), then the question (retrieval misses, the provider hits).
    embedding = "citewise_embedding_cache_lookups_total"
    assert delta(embedding, kind="query", result="miss") == 2
    assert delta(embedding, kind="query", result="hit") == 1
    assert delta(embedding, kind="document", result="miss") > 0  # the provider's sentences
    assert "/metrics" not in schema["paths"]


def test_answers_without_redis_count_as_bypass(settings: Callable[..., Settings]) -> None:
    with client_for(settings(redis_url="off")) as client:
        before = scrape(client)
        assert client.post("/v1/ask", json={"question": INVITATION}).headers[CACHE] == "bypass"
        after = scrape(client)
    cache = "citewise_answer_cache_requests_total"
    assert value(after, cache, result="bypass") - value(before, cache, result="bypass") == 1


def test_the_metrics_key_guards_metrics_and_no_rate_limit_applies(
    settings: Callable[..., Settings],
) -> None:
    tight = {f"rate_limit_{family}_per_ip": "1/minute" for family in ("search", "admin", "widget")}
    with client_for(settings(metrics_key=METRICS_KEY, **tight)) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers=bearer("not-the-metrics-key-000"))
        not_bearer = client.get("/metrics", headers={"X-API-Key": METRICS_KEY})
        scrapes = [client.get("/metrics", headers=bearer(METRICS_KEY)) for _ in range(5)]
        limited = [client.post("/v1/search", json={"query": "refunds"}) for _ in range(2)]
    for refused in (missing, wrong, not_bearer):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
    assert [s.status_code for s in scrapes] == [200] * 5
    assert "citewise_http_request_duration_seconds" in scrapes[-1].text
    assert [r.status_code for r in limited] == [200, 429]  # the limits are on, just not here


def test_a_short_metrics_key_is_refused(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CITEWISE_METRICS_KEY"):
        Settings(home=tmp_path, cache_dir=cache_dir, metrics_key="short")


def test_queue_depth_is_asked_at_scrape_time(
    settings: Callable[..., Settings], tmp_path: Path
) -> None:
    depth = "citewise_job_queue_depth"
    (tmp_path / "a.md").write_text("# A\n\nA page to ingest.\n", encoding="utf-8")
    with client_for(settings(ingest_root=tmp_path)) as client:
        jobs = client.app.state.services.jobs
        try:
            empty = scrape(client)
            jobs.submit("first", [str(tmp_path)])  # no worker runs: they stay queued
            jobs.submit("second", [str(tmp_path)])
            queued = scrape(client)
        finally:
            jobs.queue.empty()  # the job records live under RQ's own keys
    assert (depth, frozenset()) in empty and value(empty, depth) == 0
    assert value(queued, depth) == 2


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def components(body: dict[str, Any]) -> dict[str, str]:
    return {name: part["status"] for name, part in body["components"].items()}


def test_readyz_reports_every_component(
    settings: Callable[..., Settings], home: Path, tmp_path: Path
) -> None:
    with client_for(settings()) as client:
        ready = client.get("/readyz")
    with client_for(settings(home=tmp_path / "empty")) as client:
        empty = client.get("/readyz")
    with client_for(settings(chroma_url="http://127.0.0.1:9", chroma_timeout_s=2)) as client:
        no_store = client.get("/readyz")
    with client_for(settings(redis_url="off")) as client:
        off = client.get("/readyz")

    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert components(ready.json()) == dict.fromkeys(
        ("chroma", "model", "knowledge_bases", "redis", "queue"), "ok"
    )
    assert all(ready.json()["checks"].values())
    assert all(part["detail"] for part in ready.json()["components"].values())
    listed = ready.json()["knowledge_bases"]
    assert "default" in listed["names"] and listed["count"] == len(listed["names"])
    assert "default" in ready.json()["components"]["knowledge_bases"]["detail"]

    # No knowledge base at all is still ready: they are listed, not required.
    assert empty.status_code == 200 and empty.json()["status"] == "ready", empty.text
    assert empty.json()["knowledge_bases"] == {"count": 0, "names": []}
    assert components(empty.json())["knowledge_bases"] == "ok"

    assert no_store.status_code == 503 and no_store.json()["status"] == "not_ready"
    assert no_store.json()["error"]["code"] == "not_ready"
    assert "store_reachable" in no_store.json()["error"]["message"]
    assert components(no_store.json())["chroma"] == "down"
    assert no_store.json()["knowledge_bases"] is None

    assert off.status_code == 200 and off.json()["status"] == "ready"
    assert "redis_reachable" not in off.json()["checks"]
    for response in (ready, empty, no_store, off):
        assert str(home) not in response.text and "redis://" not in response.text
        assert "127.0.0.1" not in response.text


def test_readyz_with_redis_down_is_degraded_and_says_which(
    home: Path, cache_dir: Path, redis_server: RedisServer
) -> None:
    settings = Settings(
        home=home, cache_dir=cache_dir, redis_url=redis_server.url, redis_retry_s=0.0
    )
    with client_for(settings) as client:
        assert value(scrape(client), "citewise_job_queue_depth") == 0  # the real RQ queue
        redis_server.kill()
        down = client.get("/readyz")
        without_depth = scrape(client)  # still answered: the gauge is left out
    assert down.status_code == 200
    body = down.json()
    assert body["status"] == "degraded"
    assert components(body) == {
        "chroma": "ok",
        "model": "ok",
        "knowledge_bases": "ok",
        "redis": "down",
        "queue": "degraded",
    }
    assert body["checks"]["redis_reachable"] is False and body["degraded"] == ["redis_reachable"]
    assert str(redis_server.port) not in down.text and "Connection" not in down.text
    assert ("citewise_job_queue_depth", frozenset()) not in without_depth


def test_ingests_are_counted_by_knowledge_base(
    ingest: Callable[..., IngestReport], corpus: Path, settings: Callable[..., Settings]
) -> None:
    with client_for(settings(redis_url="off")) as client:
        before = scrape(client)
        first = ingest(corpus, kb="obs-counted")
        (corpus / "extra.md").write_text("# Extra\n\nOne more page about parrots.\n")
        second = ingest(corpus, kb="obs-counted")
        ingest(corpus, kb="obs-counted", dry_run=True)  # plans only: not counted
        after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, kb="obs-counted", **labels) - value(
            before, name, kb="obs-counted", **labels
        )

    files = "citewise_ingest_files_total"
    assert delta(files, outcome="added") == first.files_added + second.files_added == 6
    assert delta(files, outcome="unchanged") == second.files_unchanged == 5
    assert delta(files, outcome="failed") == 0
    assert delta("citewise_ingest_chunks_embedded_total") == (
        first.chunks_embedded + second.chunks_embedded
    )
    assert first.chunks_embedded > 0
    assert delta("citewise_ingest_duration_seconds_count") == 2


def test_uvicorn_factory_logs_json_and_adds_up_metrics_of_every_process(
    home: Path, cache_dir: Path, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = citewise_env(
        home,
        cache_dir,
        CITEWISE_REDIS_URL=redis_url,
        CITEWISE_REDIS_PREFIX=redis_prefix,
        CITEWISE_QUERY_KEYS=QUERY_KEY,
        PROMETHEUS_MULTIPROC_DIR=str(shared),
    )
    command = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app"]
    lines: list[str] = []
    with subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        assert server.stderr is not None
        try:
            for line in server.stderr:  # blocks until the server writes; ends if it exits
                lines.append(line)
                if "Uvicorn running on" in line:  # listening now
                    break
            else:
                raise AssertionError("the server did not start:\n" + "".join(lines))
            # Keep reading, so the server never blocks on a full pipe.
            reader = threading.Thread(target=lines.extend, args=(server.stderr,), daemon=True)
            reader.start()
            samples = _ask_ingest_and_scrape(port, tmp_path, cache_dir, shared)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        reader.join(timeout=60)

    # The ingest ran in another process; the server's scrape adds its files in.
    assert value(samples, "citewise_ingest_files_total", kb="elsewhere", outcome="added") == 2
    assert value(samples, "citewise_ingest_duration_seconds_count", kb="elsewhere") == 1
    requests = "citewise_http_request_duration_seconds_count"
    assert value(samples, requests, method="POST", route="/v1/ask", status_class="2xx") == 1

    err = "".join(lines)
    records = json_lines(err)  # uvicorn's own lines included
    assert QUERY_KEY not in err
    uvicorn = {r["message"] for r in records if r["logger"].startswith("uvicorn")}
    assert {"Application startup complete.", "Application shutdown complete."} <= uvicorn
    assert any(m.startswith("Uvicorn running on") for m in uvicorn)
    assert all("color_message" not in r for r in records)
    assert access_line(records, "uvicorn-ask")["route"] == "/v1/ask"


def _ask_ingest_and_scrape(port: int, tmp_path: Path, cache_dir: Path, shared: Path) -> Samples:
    """One answer from the server, an ingest in a process of its own, then the server's scrape."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        asked = http.post(
            "/v1/ask",
            json={"question": INVITATION},
            headers={**bearer(QUERY_KEY), "X-Request-Id": "uvicorn-ask"},
        )
        assert asked.status_code == 200 and asked.headers["x-request-id"] == "uvicorn-ask"
        documents = tmp_path / "docs"
        documents.mkdir()
        for name in ("a", "b"):
            (documents / f"{name}.md").write_text(f"# Page {name}\n\nAbout {name}.\n")
        env = citewise_env(
            tmp_path / "ingest-home",
            cache_dir,
            CITEWISE_REDIS_URL="off",
            PROMETHEUS_MULTIPROC_DIR=str(shared),
        )
        code, report = run_json("ingest", str(documents), "--kb", "elsewhere", env=env)
        assert code == 0 and report["files_added"] == 2
        return parse_metrics(http.get("/metrics").text)
