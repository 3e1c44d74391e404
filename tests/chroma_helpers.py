"""A Chroma server of the test's own (`chroma run`), to kill, freeze and start again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from tests.server_process import ServerProcess

START_TIMEOUT_S = 60.0


class ChromaServer(ServerProcess):
    """``chroma run`` on a free port, data under ``workdir``; the same port and data on restart."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.url = f"http://127.0.0.1:{self.port}"
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Start it and return once its heartbeat answers (polled, with a deadline)."""
        chroma = Path(sys.executable).parent / "chroma"  # the CLI chromadb installs in the venv
        self._log = (self.workdir / "chroma.log").open("ab")
        self.process = subprocess.Popen(
            [str(chroma), "run", "--path", str(self.workdir / "data"),
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"chroma run exited at start:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # readiness poll interval, not a synchronisation
        raise AssertionError(f"chroma run did not answer within {START_TIMEOUT_S} s:\n{self.log()}")

    def kill(self) -> None:
        super().kill()
        self._close_log()

    def stop(self) -> None:
        super().stop()
        self._close_log()

    def log(self) -> str:
        path = self.workdir / "chroma.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
