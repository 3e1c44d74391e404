"""Run the real ``citewise`` command in a subprocess, with the network made unusable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any

# Any HTTP(S) a library attempts goes to a closed local port and fails at once.
NO_NETWORK = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "",
}


def citewise_env(home: Path, cache_dir: Path, **extra: str) -> dict[str, str]:
    """The test's environment less its CITEWISE_ variables, plus these (no .env file read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEWISE_")}
    return (
        env
        | NO_NETWORK
        | {
            "CITEWISE_HOME": str(home),
            "CITEWISE_CACHE_DIR": str(cache_dir),
            "CITEWISE_ENV_FILE": "off",
            # Off unless a test says (tests/conftest.py says why).
            "CITEWISE_INGEST_ANSWER_UNITS": os.environ["CITEWISE_INGEST_ANSWER_UNITS"],
            **extra,
        }
    )


def command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cli.main import main; main()", *args]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), env=env, capture_output=True, text=True, timeout=600)


def run_json(*args: str, env: dict[str, str]) -> tuple[int, Any]:
    done = run(*args, "--json", env=env)
    lines = done.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {done.stdout!r} / {done.stderr!r}"
    return done.returncode, json.loads(lines[0])


@dataclass
class Watcher:
    """A running ``citewise ingest --watch --json``: its report lines and its stderr lines."""

    reports: Queue[str]
    notes: Queue[str]

    def next_report(self, timeout: float = 120) -> Any:
        return json.loads(self.reports.get(timeout=timeout))

    def wait_until_armed(self, timeout: float = 300) -> None:
        """Returns once it watches: no change made from now on can be missed."""
        while "watching" not in self.notes.get(timeout=timeout):
            pass


@contextmanager
def watching(*args: str, env: dict[str, str]) -> Iterator[Watcher]:
    """``citewise ingest ARGS --watch --json`` in a subprocess, terminated afterwards."""
    process = subprocess.Popen(
        command("ingest", *args, "--watch", "--json"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watcher = Watcher(Queue(), Queue())
    readers = [
        threading.Thread(target=lambda s=stream, q=sink: [q.put(line) for line in s or []])
        for stream, sink in ((process.stdout, watcher.reports), (process.stderr, watcher.notes))
    ]
    for reader in readers:
        reader.start()
    try:
        yield watcher
    finally:
        process.terminate()
        process.wait(timeout=60)
        for reader in readers:  # the pipes reach their end once the process is gone
            reader.join(timeout=60)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


class Server:
    """A running ``citewise serve --port 0``: its process, URL and log messages (in order)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.url = ""
        self.messages: list[str] = []
        self._arrived = threading.Condition()

    def add(self, message: str) -> None:
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    def wait_for(self, pattern: str, nth: int = 1, timeout: float = 300) -> re.Match[str]:
        """The ``nth`` log message since the start that matches ``pattern``, once it is there;
        ``AssertionError`` if it is not within ``timeout`` seconds."""

        def found() -> list[re.Match[str]]:
            matches = (re.search(pattern, m) for m in self.messages)
            return [m for m in matches if m is not None]

        with self._arrived:
            if not self._arrived.wait_for(lambda: len(found()) >= nth, timeout=timeout):
                raise AssertionError(f"no log line {pattern!r} (#{nth}): {self.messages[-20:]}")
            return found()[nth - 1]


@contextmanager
def serving(env: dict[str, str]) -> Iterator[Server]:
    """``citewise serve`` in a subprocess on a port of its choosing, killed afterwards if it is
    still running; yields once it listens."""
    process = subprocess.Popen(
        command("serve", "--port", "0"),
        env=env | {"CITEWISE_LOG_FORMAT": "json"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Server(process)

    def read() -> None:
        for line in process.stderr or []:
            try:
                server.add(str(json.loads(line).get("message", "")))
            except (json.JSONDecodeError, AttributeError):  # a library printing on its own
                server.add(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        server.url = server.wait_for(r"Uvicorn running on (http://\S+)").group(1)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        reader.join(timeout=60)
        if process.stderr is not None:
            process.stderr.close()


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def eventually(check: Any, timeout: float = 120, every: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every)
