"""Run the real ``citewise`` command in a subprocess, with the network made unusable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEWISE_")}
    return (
        env
        | NO_NETWORK
        | {"CITEWISE_HOME": str(home), "CITEWISE_CACHE_DIR": str(cache_dir), **extra}
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
