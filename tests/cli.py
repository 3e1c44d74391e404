"""Run the real ``citewise`` command in a subprocess, with the network made unusable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
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
    return [sys.executable, "-c", "from citewise.cli import main; main()", *args]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), env=env, capture_output=True, text=True, timeout=600)


def run_json(*args: str, env: dict[str, str]) -> tuple[int, Any]:
    done = run(*args, "--json", env=env)
    lines = done.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {done.stdout!r} / {done.stderr!r}"
    return done.returncode, json.loads(lines[0])
