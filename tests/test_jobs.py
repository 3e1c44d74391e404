"""Ingest jobs for real: the API queues them in Redis, `citewise worker --burst` runs them in a
subprocess, the API reports their state; plus `citewise ingest --watch`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Empty
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from rq.job import Job, JobStatus

from api.main import create_app
from api.routes.health import NO_WORKER
from citewise.job_queue import claim_key, renew_claim
from citewise.settings import Settings
from cli.rq_worker import CitewiseWorker
from cli.worker import worker_options
from tests.cli import alive, citewise_env, command, eventually, serving, watching
from tests.conftest import SAMPLE
from tests.redis_helpers import drop_jobs

ADMIN_KEY = "admin-key-1234567890abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The ingest root, holding two small folders of the sample help centre."""
    root = tmp_path / "documents"
    for folder, names in {
        "billing": ["managing-your-subscription.md", "plans-and-pricing.html"],
        "expenses": ["mileage-and-per-diem.md"],
    }.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(SAMPLE / folder / name, root / folder / name)
    return root


@pytest.fixture
def env(tmp_path: Path, cache_dir: Path, redis_url: str, redis_prefix: str) -> Iterator[Any]:
    values = citewise_env(
        tmp_path / "home",
        cache_dir,
        CITEWISE_REDIS_URL=redis_url,
        CITEWISE_REDIS_PREFIX=redis_prefix,
    )
    yield values
    drop_jobs(redis_url, redis_prefix)  # redis_prefix deletes the keys under the prefix


@pytest.fixture
def client(env: dict[str, str], root: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        home=Path(env["CITEWISE_HOME"]),
        cache_dir=Path(env["CITEWISE_CACHE_DIR"]),
        redis_url=env["CITEWISE_REDIS_URL"],
        redis_prefix=env["CITEWISE_REDIS_PREFIX"],
        admin_keys=ADMIN_KEY,
        ingest_root=root,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def work(env: dict[str, str]) -> None:
    """Run every queued job in a real worker process, then return."""
    done = subprocess.run(
        command("worker", "--burst"), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_queued_ingest_runs_in_the_worker_and_reports_progress_and_result(
    client: TestClient, env: dict[str, str]
) -> None:
    submitted = client.post("/v1/kbs/billing/ingest", json={"path": "billing"}, headers=ADMIN)
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["state"] == "queued" and job["kb"] == "billing"
    busy = client.post("/v1/kbs/billing/ingest", json={"path": "billing"}, headers=ADMIN)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "kb_busy"
    assert job["job_id"] in busy.json()["error"]["message"]
    other = client.post("/v1/kbs/expenses/ingest", json={"path": "expenses"}, headers=ADMIN)
    assert other.status_code == 202  # one job per knowledge base, not one in all

    work(env)

    state = client.get(f"/v1/jobs/{job['job_id']}", headers=ADMIN).json()
    assert state["state"] == "finished", state
    assert state["progress"]["done"] == state["progress"]["total"] == 2
    assert state["report"]["files_added"] == 2 and state["report"]["chunks_added"] > 0
    assert state["started_at"] >= state["enqueued_at"] and state["ended_at"] >= state["started_at"]
    hits = client.post("/v1/search", json={"query": "annual billing", "kb": "billing"}).json()
    assert hits["hits"][0]["source"] in {"plans-and-pricing.html", "managing-your-subscription.md"}

    again = client.post("/v1/kbs/billing/ingest", json={"path": "billing"}, headers=ADMIN)
    assert again.status_code == 202  # the claim was released when the job ended


def test_a_failing_job_says_why_without_internals(
    client: TestClient, env: dict[str, str], root: Path
) -> None:
    submitted = client.post("/v1/kbs/gone/ingest", json={"path": "expenses"}, headers=ADMIN)
    shutil.rmtree(root / "expenses")  # vanishes before the worker gets to it
    work(env)
    state = client.get(f"/v1/jobs/{submitted.json()['job_id']}", headers=ADMIN).json()
    assert state["state"] == "failed"
    assert state["error"]["code"] == "invalid_request"
    assert "handovers" not in state["progress"]  # it failed by itself: never run again
    assert "Traceback" not in json.dumps(state)
    retry = client.post("/v1/kbs/gone/ingest", json={"path": "billing"}, headers=ADMIN)
    assert retry.status_code == 202  # a failed job does not hold the knowledge base


def test_paths_must_stay_inside_the_ingest_root(client: TestClient, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "keys.md").write_text("# Keys\n\nnothing to see\n", encoding="utf-8")
    (tmp_path / "documents" / "sneaky").symlink_to(outside)
    for path in ("../secret", str(outside), "sneaky", "billing/../../secret", "missing"):
        refused = client.post("/v1/kbs/default/ingest", json={"path": path}, headers=ADMIN)
        assert refused.status_code == 400, path
        assert str(tmp_path) not in refused.text  # no server paths in the answer
    malformed = client.post("/v1/kbs/default/ingest", content=b"{}", headers=ADMIN | JSON)
    assert malformed.status_code == 400
    untyped = client.post("/v1/kbs/default/ingest", content=b'{"path": "billing"}', headers=ADMIN)
    assert untyped.status_code == 415  # JSON must say it is JSON
    anonymous = client.post("/v1/kbs/default/ingest", json={"path": "billing"})
    assert anonymous.status_code == 401
    unknown = client.get("/v1/jobs/" + "0" * 32, headers=ADMIN)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"


def test_watch_re_ingests_after_a_change(env: dict[str, str], root: Path) -> None:
    folder = root / "billing"
    quick = env | {"CITEWISE_WATCH_DEBOUNCE_MS": "200"}
    with watching(str(folder), "--kb", "watched", env=quick) as watcher:
        try:
            first = watcher.next_report(timeout=300)
            assert first["files_added"] == 2
            watcher.wait_until_armed()
            edited = folder / "managing-your-subscription.md"
            edited.write_text(
                edited.read_text(encoding="utf-8") + "\n\n## Pausing\n\nPausing is not possible.\n",
                encoding="utf-8",
            )
            second = watcher.next_report()
            assert second["files_changed"] == 1 and second["files_unchanged"] == 1
            assert second["chunks_added"] >= 1
        except Empty:
            pytest.fail("the watcher printed no report in time")


def test_a_gated_job_is_refused_when_its_golden_questions_fail(
    client: TestClient, env: dict[str, str], root: Path
) -> None:
    golden = Path(env["CITEWISE_HOME"]) / "golden" / "billing.jsonl"
    golden.parent.mkdir(parents=True)
    question = {"question": "How do I cancel my subscription?",
                "source": "managing-your-subscription.md"}  # fmt: skip
    golden.write_text(json.dumps(question) + "\n", encoding="utf-8")

    first = client.post("/v1/kbs/billing/ingest", json={"path": "billing"}, headers=ADMIN).json()
    work(env)
    state = client.get(f"/v1/jobs/{first['job_id']}", headers=ADMIN).json()
    assert state["state"] == "finished", state
    assert state["gate"]["passed"] and state["gate"]["found"] == 1

    (root / "billing" / "managing-your-subscription.md").unlink()
    second = client.post("/v1/kbs/billing/ingest", json={"path": "billing"}, headers=ADMIN).json()
    work(env)
    state = client.get(f"/v1/jobs/{second['job_id']}", headers=ADMIN).json()
    assert state["state"] == "failed"
    assert state["error"]["code"] == "quality_gate_failed"
    assert (
        not state["gate"]["passed"] and state["gate"]["missed"][0]["source"] == question["source"]
    )
    hits = client.post("/v1/search", json={"query": "cancel subscription", "kb": "billing"})
    assert hits.json()["hits"][0]["source"] == "managing-your-subscription.md"  # still live


def test_uploaded_files_are_ingested_under_safe_names_within_limits(
    client: TestClient, env: dict[str, str]
) -> None:
    uploads = Path(env["CITEWISE_HOME"]) / "uploads" / "uploaded"
    page = (SAMPLE / "billing" / "managing-your-subscription.md").read_bytes()
    files = [
        ("files", ("../../etc/cancel.md", page, "text/markdown")),
        ("files", ("notes.txt", b"Gift cards never expire.\n", "text/plain")),
    ]
    submitted = client.post("/v1/kbs/uploaded/ingest", files=files, headers=ADMIN)
    assert submitted.status_code == 202, submitted.text
    assert sorted(p.name for p in uploads.iterdir()) == ["cancel.md", "notes.txt"]
    work(env)
    state = client.get(f"/v1/jobs/{submitted.json()['job_id']}", headers=ADMIN).json()
    assert state["state"] == "finished" and state["report"]["files_added"] == 2

    over = b"x" * (int(Settings().limits.max_upload_mb * 2**20) + 1)
    too_big = client.post(
        "/v1/kbs/uploaded/ingest",
        files=[("files", ("ok.md", page, "text/markdown")), ("files", ("big.txt", over))],
        headers=ADMIN,
    )
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "upload_too_large"
    wrong = client.post(
        "/v1/kbs/uploaded/ingest", files=[("files", ("tool.exe", b"MZ"))], headers=ADMIN
    )
    assert wrong.status_code == 400
    # Neither refused request left a file behind, whole or partial.
    assert sorted(p.name for p in uploads.iterdir()) == ["cancel.md", "notes.txt"]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (staging included), by relative path, with its bytes."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def staged_folders(env: dict[str, str]) -> list[Path]:
    staging = Path(env["CITEWISE_HOME"]) / "uploads" / ".staging"
    return list(staging.iterdir()) if staging.exists() else []


def test_an_upload_refused_while_a_job_holds_the_kb_leaves_nothing_behind(
    client: TestClient, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = Path(env["CITEWISE_HOME"]) / "uploads"
    first = [("files", ("notes.md", b"# Notes\n\nGift cards never expire.\n", "text/markdown"))]
    held = client.post("/v1/kbs/billing/ingest", files=first, headers=ADMIN)
    assert held.status_code == 202, held.text  # queued: no worker runs here, so it holds billing
    before = tree(uploads)
    assert before == {"billing/notes.md": first[0][1][1]}

    second = [
        ("files", ("notes.md", b"# Notes\n\nGift cards expire after a year.\n", "text/markdown")),
        ("files", ("extra.md", b"# Extra\n\nMore.\n", "text/markdown")),
    ]
    busy = client.post("/v1/kbs/billing/ingest", files=second, headers=ADMIN)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "kb_busy"
    assert held.json()["job_id"] in busy.json()["error"]["message"]
    assert tree(uploads) == before and staged_folders(env) == []

    # Past the early check (as when two requests arrive together), the claim refuses it: the
    # files were received into staging and are dropped, never reaching the folder.
    monkeypatch.setattr("citewise.job_queue.JobQueue.check_free", lambda self, kb: None)
    late = client.post("/v1/kbs/billing/ingest", files=second, headers=ADMIN)
    assert late.status_code == 409 and late.json()["error"]["code"] == "kb_busy"
    assert tree(uploads) == before and staged_folders(env) == []
    # The same for a path job, and the held job is still the one queued.
    path_job = client.post("/v1/kbs/billing/ingest", json={"path": "billing"}, headers=ADMIN)
    assert path_job.status_code == 409
    state = client.get(f"/v1/jobs/{held.json()['job_id']}", headers=ADMIN).json()
    assert state["state"] == "queued"


def test_concurrent_uploads_to_one_kb_leave_only_the_accepted_files(
    client: TestClient, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every request gets past the early check, so the claim alone must sort them out.
    monkeypatch.setattr("citewise.job_queue.JobQueue.check_free", lambda self, kb: None)
    uploads = Path(env["CITEWISE_HOME"]) / "uploads"

    def upload(n: int) -> tuple[int, int, str]:
        files = [("files", (f"page-{n}-{i}.md", f"# Page {n}.{i}\n\nText.\n".encode()))
                 for i in range(3)]  # fmt: skip
        response = client.post("/v1/kbs/racing/ingest", files=files, headers=ADMIN)
        return n, response.status_code, response.text

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(upload, range(8)))
    accepted = [n for n, status, _ in results if status == 202]
    assert len(accepted) == 1, results
    assert all(status == 409 for n, status, _ in results if n not in accepted), results
    (winner,) = accepted
    assert sorted(tree(uploads)) == [f"racing/page-{winner}-{i}.md" for i in range(3)]
    assert staged_folders(env) == []


def test_an_upload_whose_job_cannot_be_queued_is_taken_back(
    client: TestClient, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = Path(env["CITEWISE_HOME"]) / "uploads"
    old = b"# Notes\n\nGift cards never expire.\n"
    (uploads / "billing").mkdir(parents=True)
    (uploads / "billing" / "notes.md").write_bytes(old)
    before = tree(uploads)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("gone")

    with monkeypatch.context() as patched:
        patched.setattr("rq.Queue.enqueue_call", refuse)
        files = [
            ("files", ("notes.md", b"# Notes\n\nNew text.\n", "text/markdown")),
            ("files", ("new.md", b"# New\n\nA page.\n", "text/markdown")),
        ]
        failed = client.post("/v1/kbs/billing/ingest", files=files, headers=ADMIN)
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "queue_unavailable"
    assert tree(uploads) == before and staged_folders(env) == []  # the old file is back
    # ... and the claim was released: the next upload is accepted.
    again = client.post("/v1/kbs/billing/ingest", files=files, headers=ADMIN)
    assert again.status_code == 202, again.text
    assert tree(uploads)["billing/notes.md"] == b"# Notes\n\nNew text.\n"


def test_readyz_says_when_jobs_wait_with_no_worker(client: TestClient, env: dict[str, str]) -> None:
    idle = client.get("/readyz")
    assert idle.status_code == 200 and idle.json()["status"] == "ready", idle.text
    assert idle.json()["checks"]["queue_served"] is True
    assert idle.json()["knowledge_bases"] == {"count": 0, "names": []}  # none yet: still ready

    job = client.post("/v1/kbs/billing/ingest", json={"path": "billing"}, headers=ADMIN).json()
    stuck = client.get("/readyz")
    assert stuck.status_code == 200, stuck.text  # answers are still served
    body = stuck.json()
    assert body["status"] == "degraded" and body["degraded"] == ["queue_served"]
    assert body["checks"]["queue_served"] is False and body["checks"]["redis_reachable"] is True
    assert body["components"]["queue"] == {"status": "degraded", "detail": NO_WORKER}
    assert body["components"]["redis"]["status"] == "ok"

    work(env)  # a worker came, ran the job and left: nothing waits any more
    assert client.get(f"/v1/jobs/{job['job_id']}", headers=ADMIN).json()["state"] == "finished"
    done = client.get("/readyz").json()
    assert done["status"] == "ready" and done["checks"]["queue_served"] is True
    assert done["knowledge_bases"] == {"count": 1, "names": ["billing"]}


@pytest.fixture
def serve_env(env: dict[str, str], root: Path) -> dict[str, str]:
    """``citewise serve`` as an operator starts it: defaults, its own home and Redis prefix."""
    return env | {
        "CITEWISE_INGEST_ROOT": str(root),
        "CITEWISE_ADMIN_KEYS": ADMIN_KEY,
        "CITEWISE_RATE_LIMIT_ADMIN_PER_IP": "none",  # the test polls job states
        "CITEWISE_RATE_LIMIT_ADMIN_PER_KEY": "none",
    }


def job_state(url: str, job_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/v1/jobs/{job_id}", headers=ADMIN, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def ended(url: str, job_id: str) -> dict[str, Any] | None:
    state = job_state(url, job_id)
    return state if state["state"] in ("finished", "failed") else None


def submit(url: str, kb: str, path: str) -> str:
    answer = httpx.post(f"{url}/v1/kbs/{kb}/ingest", json={"path": path}, headers=ADMIN, timeout=30)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


def test_serve_runs_jobs_itself_restarts_its_worker_and_takes_it_down(
    serve_env: dict[str, str],
) -> None:
    with serving(serve_env) as server:
        first = int(server.wait_for(r"embedded ingest worker started \(pid (\d+)\)").group(1))
        assert alive(first)
        job = submit(server.url, "billing", "billing")
        state = eventually(lambda: ended(server.url, job), timeout=300)
        assert state and state["state"] == "finished", state  # no other process was started
        assert state["report"]["files_added"] == 2

        # A worker that dies is replaced (after a logged pause), and the new one works.
        os.kill(first, signal.SIGKILL)
        server.wait_for(r"embedded ingest worker exited \(code -9\).*starting it again")
        second = int(server.wait_for(r"embedded ingest worker started \(pid (\d+)\)", 2).group(1))
        assert second != first and alive(second)
        job = submit(server.url, "expenses", "expenses")
        state = eventually(lambda: ended(server.url, job), timeout=300)
        assert state and state["state"] == "finished", state
        ready = httpx.get(f"{server.url}/readyz", timeout=30).json()
        assert ready["status"] == "ready" and ready["knowledge_bases"]["count"] == 2

        server.process.send_signal(signal.SIGTERM)
        server.wait_for(r"embedded ingest worker stopped")
        assert server.process.wait(timeout=120) in (0, -signal.SIGTERM)
        # The server waited for it: gone by the time the server is, not some time later.
        assert not alive(second) and not alive(first)


def test_stopping_the_server_fails_its_running_job_rather_than_handing_it_over(
    serve_env: dict[str, str], root: Path, redis_url: str
) -> None:
    shutil.copytree(SAMPLE, root / "everything")  # long enough to be caught running
    with serving(serve_env) as server:
        server.wait_for(r"embedded ingest worker started")
        job = submit(server.url, "everything", "everything")
        running = eventually(lambda: job_state(server.url, job)["state"] == "started", 120, 0.02)
        assert running, job_state(server.url, job)
        server.process.send_signal(signal.SIGTERM)
        server.wait_for(r"the running job is stopped and failed")
        assert server.process.wait(timeout=120) in (0, -signal.SIGTERM)
    # A job whose worker died is queued again for another worker (CITEWISE_JOB_HANDOVERS);
    # one stopped with the server is failed, so it does not hold its knowledge base.
    with redis.Redis.from_url(redis_url) as connection:
        stored = Job.fetch(job, connection=connection)
        assert stored.get_status() == JobStatus.FAILED and stored.retries_left == 0


def test_the_embedded_worker_stops_when_the_server_is_killed(serve_env: dict[str, str]) -> None:
    with serving(serve_env) as server:
        worker = int(server.wait_for(r"embedded ingest worker started \(pid (\d+)\)").group(1))
        server.wait_for(r"Listening on")  # the worker's own first lines: it is at work
        server.process.kill()  # no shutdown: the worker must notice by itself
        server.process.wait(timeout=60)
        assert eventually(lambda: not alive(worker), timeout=60), "the worker outlived the server"


def test_with_external_workers_serve_leaves_jobs_queued_and_says_so(
    serve_env: dict[str, str], env: dict[str, str]
) -> None:
    with serving(serve_env | {"CITEWISE_WORKERS": "external"}) as server:
        job = submit(server.url, "billing", "billing")
        assert job_state(server.url, job)["state"] == "queued"
        ready = httpx.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 200
        assert ready.json()["components"]["queue"] == {"status": "degraded", "detail": NO_WORKER}
        assert ready.json()["degraded"] == ["queue_served"]

        work(env)  # an operator's `citewise worker --burst`
        assert job_state(server.url, job)["state"] == "finished"
        assert httpx.get(f"{server.url}/readyz", timeout=30).json()["status"] == "ready"
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=120)
    assert not [m for m in server.messages if "embedded ingest worker" in m]
    assert any("left to `citewise worker` processes" in m for m in server.messages)


def test_a_run_renews_its_claim_but_never_takes_another_jobs(
    redis_url: str, redis_prefix: str
) -> None:
    """A job run again after its worker died may start after the claim made at submission
    expired: each run renews it, unless another job holds the knowledge base by then."""
    with redis.Redis.from_url(redis_url) as connection:
        key = claim_key(redis_prefix, "handbook")
        connection.set(key, "job-a", ex=5)
        assert renew_claim(connection, key, "job-a", 600)
        assert 590 < connection.ttl(key) <= 600
        connection.delete(key)  # expired meanwhile: the job's late run holds it again
        assert renew_claim(connection, key, "job-a", 600) and connection.get(key) == b"job-a"
        connection.set(key, "pending:job-a", ex=5)  # queued and taken before it was confirmed
        assert renew_claim(connection, key, "job-a", 600) and connection.get(key) == b"job-a"
        connection.set(key, "job-b", ex=5)
        assert not renew_claim(connection, key, "job-a", 600)
        assert connection.get(key) == b"job-b" and connection.ttl(key) <= 5


@pytest.mark.parametrize(("check_s", "beat", "lasts"), [(60, 30, 90), (1, 5, 20), (600, 30, 90)])
def test_a_busy_workers_heartbeat_follows_the_check_interval(
    check_s: int, beat: int, lasts: int
) -> None:
    """At the default, RQ's own heartbeat (a beat every 30 s, good for 60 s more); checking
    every second, a dead worker's job is free for another after 20 s rather than RQ's 90."""
    connection = redis.Redis()  # never reached: nothing here talks to Redis
    options = worker_options(Settings(worker_check_s=check_s).ingest)
    worker = CitewiseWorker(["citewise-test"], connection=connection, **options)
    job = Job.create(func=print, connection=connection, timeout=-1)  # no time limit
    assert worker.job_monitoring_interval == beat
    assert worker.get_heartbeat_ttl(job) == lasts
    job.timeout = 12  # as RQ: no beat is due after the job's own timeout
    assert worker.get_heartbeat_ttl(job, working_time=10) == 2 + lasts - beat
