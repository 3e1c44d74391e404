"""A server of the test's own in a child process, on a free port: kill, freeze, thaw, stop."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.answer_helpers import free_socket


class ServerProcess:
    """What Redis and Chroma test servers share; subclasses start the process."""

    def __init__(self, workdir: Path) -> None:
        sock = free_socket()
        self.port: int = sock.getsockname()[1]
        sock.close()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def freeze(self) -> None:
        """SIGSTOP: the port stays open and nothing answers (a server that hangs)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.kill()
