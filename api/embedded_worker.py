"""The ingest worker ``citewise serve`` runs beside itself (``CITEWISE_WORKERS=embedded``).

Why a child process, supervised, rather than jobs run inside the server: an ingest is minutes of
CPU-bound Python that loads its own model; in the server it would hold the event loop's
interpreter and its memory. The child runs exactly what ``citewise worker`` runs (RQ, each job
in a forked work horse), so an embedded and an external worker behave alike, and the server
only starts, watches and stops it:

- it is started once the app's services are up (so it shares the embedded Redis the server
  started, rather than racing it) and only when there is a queue (Redis on);
- a thread waits on it; if it exits while the server runs, it is started again after a pause
  that doubles from ``min_backoff_s`` up to ``max_backoff_s`` (back to the minimum once one ran
  ``healthy_after_s``), and each exit is logged with its code;
- it runs in a session of its own, so a Ctrl-C in the terminal reaches the server only, and
  the server decides: on shutdown it is sent SIGTERM (it stops at once, failing a running job,
  see ``cli/worker.py``), then SIGKILL with its process group after ``stop_timeout_s``;
- it watches its parent: if the server dies without stopping it (SIGKILL, a crash), it stops
  itself, and its work horse dies with it. No orphans either way.

Only ``citewise serve`` passes a command here. Under ``uvicorn --factory`` (several server
processes) no worker is started: run ``citewise worker`` beside them
(``CITEWISE_WORKERS=external``, as the compose file does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

log = logging.getLogger("citewise.worker")


class EmbeddedWorker:
    """Runs ``command`` as a child process until ``stop``; restarts it when it exits."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        stop_timeout_s: float = 10.0,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        healthy_after_s: float = 60.0,
    ) -> None:
        self._command = list(command)
        self._stop_timeout_s = stop_timeout_s
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._healthy_after_s = healthy_after_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # spawning and stopping do not interleave
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="embedded-worker")
        self._thread.daemon = True  # never keeps the server alive; stop() is what ends it
        self._thread.start()

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL to its process group) and stop restarting it.

        Blocks up to ``stop_timeout_s`` and a little more: call it off the event loop."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "embedded ingest worker (pid %d) did not stop in %.0fs: killing it",
                    process.pid,
                    self._stop_timeout_s,
                )
                _kill_group(process.pid)
                process.wait()
        if self._thread is not None:
            self._thread.join(timeout=self._stop_timeout_s)

    def _supervise(self) -> None:
        backoff = self._min_backoff_s
        while True:
            code: int | None = None
            with self._lock:
                if self._stopping.is_set():
                    return
                started = time.monotonic()
                try:
                    process = subprocess.Popen(
                        self._command, stdin=subprocess.DEVNULL, start_new_session=True
                    )
                except OSError as error:
                    log.error("embedded ingest worker could not start: %s", error)
                    process = None
                else:
                    self._process = process
                    self.starts += 1
            if process is not None:
                log.info("embedded ingest worker started (pid %d)", process.pid)
                code = process.wait()
                _kill_group(process.pid)  # anything it left in its group goes with it
            if self._stopping.is_set():
                log.info("embedded ingest worker stopped")
                return
            ran = time.monotonic() - started
            if ran >= self._healthy_after_s:
                backoff = self._min_backoff_s
            log.warning(
                "embedded ingest worker exited (code %s) after %.1fs; starting it again in %.1fs",
                code,
                ran,
                backoff,
            )
            if self._stopping.wait(backoff):
                log.info("embedded ingest worker stopped")
                return
            backoff = min(backoff * 2, self._max_backoff_s)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left in it
        os.killpg(pgid, signal.SIGKILL)
