"""Sharded ingest for real: two `citewise worker` processes share one job's shards over the
test Redis and a `chroma run` server; one is SIGKILLed mid-shard, its shard is handed on, and
the end state is the single-worker ingest's. Plus the board's leases and the shard size rule."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import pytest
import redis
from rq import Worker
from rq.job import Job
from rq.registry import StartedJobRegistry
from typer.testing import CliRunner

from citewise.job_queue import JobQueue
from citewise.job_shards import ShardBoard
from citewise.redis_client import RedisHandle, connect
from citewise.search.store import ChunkStore, KnowledgeBase
from citewise.settings import Settings
from citewise.wiring import build_store
from cli.main import app
from ingest.discovery import SourceFile
from ingest.pipeline import Todo
from ingest.sharding import decode, encode, split
from tests.chroma_helpers import ChromaServer
from tests.cli import citewise_env, command, eventually
from tests.conftest import SAMPLE
from tests.redis_helpers import drop_jobs

# The first twelve sample files (every format) and a PDF that cannot be parsed, two a shard:
# seven shards. The session's sample home, ingested by one process without a queue, holds the
# same documents under the same keys.
FILES = sorted(p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*") if p.is_file())[:12]
BROKEN = "account/broken.pdf"  # in the first shard, beside two good files
SHARD_FILES = 2
LEASE_S = 3.0


def manifest_rows(settings: Settings, kb: str) -> dict[str, Any]:
    """What a manifest says of ``kb``'s documents among FILES, less when and from which folder
    they were written."""
    with sqlite3.connect(settings.manifest_path) as db:
        files = db.execute(
            "SELECT source, file_hash, status, chunk_count, bytes FROM files WHERE kb = ?", (kb,)
        )
        failures = db.execute("SELECT source, error FROM failures WHERE kb = ?", (kb,))
        fingerprint = db.execute("SELECT fingerprint FROM kbs WHERE kb = ?", (kb,))
        return {
            "files": sorted(row for row in files.fetchall() if row[0] in FILES),
            "failures": sorted(row for row in failures.fetchall() if row[0] in FILES),
            "fingerprint": fingerprint.fetchall(),
        }


def chunks(knowledge_base: KnowledgeBase) -> dict[str, dict[str, Any]]:
    """id -> metadata (content hash, offsets, headings...) of the chunks of FILES."""
    ids, metadatas = knowledge_base.ids_and_metadatas()
    return {i: m for i, m in zip(ids, metadatas, strict=True) if m["source"] in FILES}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    for name in FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / name, folder / name)
    (folder / BROKEN).write_bytes(b"%PDF-1.7\nnot really a PDF\n")
    return folder


@pytest.fixture
def workers(
    tmp_path: Path, cache_dir: Path, redis_url: str, redis_prefix: str, chroma_server: ChromaServer
) -> Iterator[tuple[dict[str, str], list[subprocess.Popen[bytes]]]]:
    """Two `citewise worker` processes sharing a home, the test Redis and the Chroma server."""
    env = citewise_env(
        tmp_path / "home",
        cache_dir,
        CITEWISE_REDIS_URL=redis_url,
        CITEWISE_REDIS_PREFIX=redis_prefix,
        CITEWISE_CHROMA_URL=chroma_server.url,
        CITEWISE_INGEST_SHARD_FILES=str(SHARD_FILES),
        CITEWISE_INGEST_SHARD_LEASE_S=str(LEASE_S),
        CITEWISE_INGEST_ANSWER_UNITS="true",  # as shipped: each shard warms its answer units
        CITEWISE_WORKER_CHECK_S="1",  # a dead coordinator's job is noticed within seconds
        NO_PROXY="127.0.0.1",  # the Chroma server; anything else still fails at once
    )
    logs: list[IO[bytes]] = []
    processes = []
    for n in range(2):
        logs.append((tmp_path / f"worker-{n}.log").open("wb"))
        processes.append(
            subprocess.Popen(command("worker"), env=env, stdout=logs[-1], stderr=subprocess.STDOUT)
        )
    try:
        yield env, processes
    finally:
        for process in processes:
            if process.poll() is None:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
                process.kill()
            process.wait(timeout=60)
        for log in logs:
            log.close()
        drop_jobs(redis_url, redis_prefix)


@dataclass
class Run:
    """A job submitted to the two workers, once one of them (its coordinator) took it."""

    settings: Settings
    handle: RedisHandle
    jobs: JobQueue
    job_id: str
    board: ShardBoard
    coordinator: str  # the RQ worker's name
    pids: dict[str, int]  # worker name -> process id


def submit(env: dict[str, str], cache_dir: Path, kb: str, corpus: Path) -> Run:
    settings = Settings(
        home=Path(env["CITEWISE_HOME"]),
        cache_dir=cache_dir,
        redis_url=env["CITEWISE_REDIS_URL"],
        redis_prefix=env["CITEWISE_REDIS_PREFIX"],
        chroma_url=env["CITEWISE_CHROMA_URL"],
    )
    handle = connect(settings.redis, settings.redis_path)
    assert handle is not None
    jobs = JobQueue(handle, settings.ingest)
    registered = eventually(lambda: len(Worker.all(queue=jobs.queue)) == 2, timeout=120)
    assert registered, "the two workers did not register"
    job_id = jobs.submit(kb, [str(corpus)]).job_id
    board = ShardBoard(handle.sync, handle.prefix, job_id)
    coordinator = eventually(lambda: Job.fetch(job_id, connection=handle.sync).worker_name, 120)
    pids = {w.name: w.pid for w in Worker.all(queue=jobs.queue) if w.pid is not None}
    return Run(settings, handle, jobs, job_id, board, coordinator, pids)


def kill_machine(processes: list[subprocess.Popen[bytes]], pid: int) -> None:
    """A machine dies: the worker, its work horse and parse workers at once."""
    process = next(p for p in processes if p.pid == pid)
    doomed = [process.pid] + [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
    for each in doomed:
        os.kill(each, signal.SIGKILL)
    process.wait(timeout=60)


def assert_as_one_worker_left_it(
    run: Run, store: ChunkStore, kb: str, home: Path, cache_dir: Path
) -> None:
    """The same end state as one process ingesting the same files without a queue (the
    session's sample home), and the BM25 index published over everything once."""
    single = Settings(home=home, cache_dir=cache_dir)
    reference = build_store(single)
    stored = chunks(store.knowledge_base(kb))
    assert stored == chunks(reference.knowledge_base("default")) and len(stored) > 40
    reference.close()
    rows = manifest_rows(run.settings, kb)
    assert rows == manifest_rows(single, "default") and len(rows["files"]) == 12
    # The file that failed has no row, as after a single worker's ingest, and its failure.
    with sqlite3.connect(run.settings.manifest_path) as db:
        files = db.execute("SELECT source FROM files WHERE kb = ?", (kb,)).fetchall()
        failed = db.execute("SELECT source FROM failures WHERE kb = ?", (kb,)).fetchall()
    assert len(files) == 12 and failed == [(BROKEN,)]
    generation = store.recorded_generation(kb)
    assert generation is not None
    lexical = run.settings.lexical_path / kb / "CURRENT"
    assert lexical.read_text(encoding="utf-8").strip() == generation


def test_two_workers_share_an_ingest_and_a_killed_ones_shard_is_handed_on(
    workers: tuple[dict[str, str], list[subprocess.Popen[bytes]]],
    corpus: Path,
    home: Path,
    cache_dir: Path,
) -> None:
    env, processes = workers
    run = submit(env, cache_dir, "sharded", corpus)
    jobs, job_id, board, coordinator = run.jobs, run.job_id, run.board, run.coordinator

    def helper_mid_shard() -> str | None:
        """The helper's worker, once it has parsed a file of a shard it holds and another
        shard is in; None before."""
        assert jobs.get(job_id).state in ("queued", "started"), jobs.get(job_id)
        if board.progress()["shards_done"] < 1:
            return None
        for number, token in board.leased().items():
            name = token.split(":")[0]
            if name != coordinator and board.files_of(number) >= 1:
                return name
        return None

    victim = eventually(helper_mid_shard, timeout=300, every=0.02)
    assert victim, f"no helper was seen mid-shard: {board.progress()}"
    kill_machine(processes, run.pids[victim])

    store = build_store(run.settings)
    try:
        # Chunks are in the store, but no BM25 index or corpus version is published yet.
        assert store.knowledge_base("sharded").count() > 0
        assert store.recorded_generation("sharded") is None
        mid = jobs.get(job_id)
        assert mid.state == "started" and mid.progress["shards_total"] == 7
        assert mid.progress["total"] == 13 and 0 < mid.progress["shards_done"] < 7

        ended = eventually(lambda: jobs.get(job_id).state in ("finished", "failed"), 300)
        final = jobs.get(job_id)
        assert ended and final.state == "finished", final
        assert final.progress["shards_done"] == final.progress["shards_total"] == 7
        assert final.progress["done"] == final.progress["total"] == 13
        assert final.progress["shards_retried"] >= 1  # the killed worker's shard
        assert final.report is not None and final.report["files_added"] == 12
        assert final.report["answer_units_embedded"] > 0  # counted from every shard
        assert [f["path"] for f in final.report["failures"]] == [BROKEN]
        shown = CliRunner().invoke(app, ["job", job_id, "--json"], env=env)
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["progress"] == final.progress

        assert_as_one_worker_left_it(run, store, "sharded", home, cache_dir)
    finally:
        store.close()
        run.handle.close()
    assert processes[0].poll() is None or processes[1].poll() is None  # the other one lives


def test_a_killed_coordinators_job_is_run_again_by_the_other_worker_to_the_same_end(
    workers: tuple[dict[str, str], list[subprocess.Popen[bytes]]],
    home: Path,
    cache_dir: Path,
    corpus: Path,
) -> None:
    run = submit(workers[0], cache_dir, "handed", corpus)
    processes = workers[1]
    # Some shards stored, others not: the coordinator's machine dies, so nothing of it reports.
    midway = eventually(lambda: 1 <= run.board.progress()["shards_done"] < 7, 300, every=0.02)
    assert midway, run.board.progress()
    # The running job's heartbeat follows CITEWISE_WORKER_CHECK_S (1 s: a beat every 5 s, good
    # for 15 s more), not RQ's fixed 30 + 60 s: its registry entry lapses within 20 s.
    registry = StartedJobRegistry(queue=run.jobs.queue)
    lapses = {
        str(entry, "utf-8").split(":")[0]: score
        for entry, score in run.handle.sync.zrange(registry.key, 0, -1, withscores=True)
    }
    assert lapses[run.job_id] - time.time() <= 21, lapses
    kill_machine(processes, run.pids[run.coordinator])

    store = build_store(run.settings)
    try:
        # RQ notices the dead worker's job once its heartbeat has expired (20 s here) and
        # queues it again; the other worker runs it from what was stored.
        ended = eventually(
            lambda: run.jobs.get(run.job_id).state in ("finished", "failed"), 400, 0.5
        )
        final = run.jobs.get(run.job_id)
        assert ended and final.state == "finished", final
        assert final.progress["handovers"] == 1
        assert final.progress["shards_done"] == final.progress["shards_total"]
        assert final.report is not None
        assert [f["path"] for f in final.report["failures"]] == [BROKEN]
        assert Job.fetch(run.job_id, connection=run.handle.sync).worker_name != run.coordinator
        assert_as_one_worker_left_it(run, store, "handed", home, cache_dir)
    finally:
        store.close()
        run.handle.close()


def todo(name: str, size: int) -> Todo:
    return Todo(SourceFile(Path("/docs"), Path("/docs") / name, name), "h" + name, True, size)


def test_shards_close_at_a_file_count_or_a_size() -> None:
    files = [todo(f"{n}.md", 10) for n in range(5)] + [todo("big.pdf", 500), todo("z.md", 10)]
    shards = split(files, 2, 100)
    assert [[t.file.source for t in s] for s in shards] == [
        ["0.md", "1.md"], ["2.md", "3.md"], ["4.md"], ["big.pdf"], ["z.md"]
    ]  # fmt: skip
    assert decode(encode(shards[0])) == shards[0]


def test_a_lease_not_renewed_is_handed_on_and_its_late_holder_is_refused(
    redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    board = ShardBoard(client, redis_prefix, "job")
    board.publish(["first", "second"], files=4)
    first = board.take("worker-a", lease_s=0.2)
    assert first is not None and (first.number, first.description) == (0, "first")
    assert board.renew(first, lease_s=0.2)
    assert eventually(lambda: board.reclaim() == [0], timeout=10, every=0.05)
    assert not board.renew(first, 0.2) and not board.complete(first, {"late": True})
    second = board.take("worker-b", lease_s=60)
    again = board.take("worker-b", lease_s=60)
    assert second is not None and again is not None
    assert (second.number, again.number) == (1, 0) and board.attempts(0) == 2
    assert board.take("worker-c", lease_s=60) is None
    assert board.complete(again, {"stored": []}) and board.pop_completed() == 0
    assert board.result(0) == {"stored": []}
    assert board.progress() == {
        "files_total": 4, "shards_done": 1, "shards_total": 2, "retried": 1, "files_done": 0
    }  # fmt: skip
    client.close()
