"""The worker side of ``CITEWISE_WORKERS=embedded``: ``citewise worker --supervised-by PID``.

``citewise serve`` starts this (``api/embedded_worker.py``) and is its only user. It is the
ordinary RQ worker with three changes, all about dying with the server:

- SIGTERM (the server stopping) stops it at once, not after the running job: the work horse is
  killed, RQ marks that job failed (so it does not hold its knowledge base; it is not handed
  to another worker either, as a job whose worker died is), and the worker unregisters. A
  server shutdown must not wait for a minutes-long ingest.
- It watches the server: if its parent process changes (the server was killed, or crashed
  without stopping it), it stops the same way; on Linux the kernel also sends it SIGTERM then
  (``PR_SET_PDEATHSIG``).
- Its work horse asks the kernel (Linux) for SIGKILL when the worker dies, so not even a
  SIGKILLed worker leaves a job running on its own.

Its log lines go to the server's stderr in the server's format (CITEWISE_LOG_FORMAT).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from rq import Queue
from rq.exceptions import StopRequested
from rq.worker import WorkerStatus

from cli.rq_worker import CitewiseWorker

log = logging.getLogger("citewise.worker")

PR_SET_PDEATHSIG = 1  # <sys/prctl.h>
PARENT_POLL_S = 0.5  # how often the worker looks for its parent (where the kernel cannot tell)
STOP_GRACE_S = 10.0  # after its parent died: time to stop cleanly before it kills itself


def die_with_parent(sig: signal.Signals) -> None:
    """On Linux, have the kernel send ``sig`` to this process when its parent exits."""
    if not sys.platform.startswith("linux"):
        return
    # Without prctl the parent watch (below) still notices, within PARENT_POLL_S.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


class SupervisedWorker(CitewiseWorker):
    """An RQ worker that stops at once on SIGTERM and whose work horse dies with it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._worker_pid = os.getpid()

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._stop_now)
        signal.signal(signal.SIGINT, self._stop_now)

    def _stop_now(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_requested:  # already stopping (the kernel and the parent watch both ask)
            return
        self._stop_requested = True
        if self.get_state() != WorkerStatus.BUSY:
            log.info("embedded ingest worker stopping")
            raise StopRequested()
        # Busy: kill the horse. RQ's monitor sees it die, marks the job failed and returns to
        # the loop, which ends on _stop_requested.
        log.warning("embedded ingest worker stopping: the running job is stopped and failed")
        if self.horse_pid:
            self.kill_horse()

    def subscribe(self) -> None:
        # RQ's own, but with redis-py's thread polling every second instead of every minute:
        # when the worker stops it waits for that thread, and a thread that saw the channel
        # unsubscribed first waits a whole poll for a new subscription (the server's shutdown
        # then stalled for the minute, or until it killed the worker).
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def handle_work_horse_killed(self, job: Any, retpid: int, ret_val: int, rusage: Any) -> None:
        if self._stop_requested:  # killed by _stop_now: failed, and not run again elsewhere
            job.retries_left = 0
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]

    def main_work_horse(self, job: Any, queue: Any) -> None:
        die_with_parent(signal.SIGKILL)
        if os.getppid() != self._worker_pid:  # the worker died before the line above
            os._exit(1)
        super().main_work_horse(job, queue)


def watch_parent(parent: int) -> None:
    """Stop this process if ``parent`` is no longer its parent (now, or at any later time)."""
    die_with_parent(signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        log.warning("the server (pid %d) is gone: the embedded ingest worker stops", parent)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_GRACE_S)
        os.kill(os.getpid(), signal.SIGKILL)  # still here: the horse goes with it (above)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_supervised(queue: Queue, parent: int, level: str, options: dict[str, Any]) -> None:
    """Work ``queue`` until SIGTERM or until ``parent`` is gone (``options``: the worker's)."""
    watch_parent(parent)
    SupervisedWorker([queue], connection=queue.connection, **options).work(logging_level=level)
