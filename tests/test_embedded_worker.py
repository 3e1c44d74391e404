"""The supervisor of ``citewise serve``'s embedded worker, on stand-in commands: it restarts a
child that exits, with a growing, logged pause, and kills one that ignores SIGTERM.
(tests/test_jobs.py runs the real thing: ``citewise serve`` with its worker.)"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from api.embedded_worker import EmbeddedWorker
from tests.cli import alive, eventually


def test_a_child_that_exits_is_started_again_with_a_growing_logged_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="citewise.worker")
    worker = EmbeddedWorker(
        [sys.executable, "-c", "raise SystemExit(3)"], min_backoff_s=0.1, max_backoff_s=0.4
    )
    worker.start()
    try:
        assert eventually(lambda: worker.starts >= 5, timeout=120)
    finally:
        worker.stop()
    exits = [r.getMessage() for r in caplog.records if "exited" in r.getMessage()]
    assert len(exits) >= 4 and all("exited (code 3)" in m for m in exits)
    pauses = [float(m.rsplit(" in ", 1)[1].rstrip("s")) for m in exits]
    assert pauses[:4] == [0.1, 0.2, 0.4, 0.4]  # doubling, up to the maximum
    assert all(r.levelno == logging.WARNING for r in caplog.records if "exited" in r.getMessage())
    assert worker.pid is None


def test_a_child_that_ignores_sigterm_is_killed_with_its_group(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    stubborn = (
        "import signal, subprocess, sys, time, pathlib\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"pathlib.Path({str(ready)!r}).write_text(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    worker = EmbeddedWorker([sys.executable, "-c", stubborn], stop_timeout_s=0.5)
    worker.start()
    try:
        assert eventually(lambda: ready.exists() and ready.read_text(), timeout=120)
        pid, grandchild = worker.pid, int(ready.read_text())
        assert pid is not None and alive(pid) and alive(grandchild)
    finally:
        worker.stop()
    assert not alive(pid)
    assert eventually(lambda: not alive(grandchild), timeout=30)  # same process group
