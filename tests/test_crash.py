"""Kill -9 an ingest at several points; the next run must converge to a clean ingest."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psutil

from citewise.settings import Settings
from tests.cli import citewise_env, command, run_json
from tests.conftest import SAMPLE, snapshot


def _count(manifest: Path, where: str) -> int:
    """Manifest rows matching ``where``; 0 before the running ingest has created the file."""
    if not manifest.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute(f"SELECT count(*) FROM files WHERE {where}").fetchone()
    except sqlite3.OperationalError:  # schema not created yet
        return 0
    return int(row[0]) if row else 0


def _ingest_killed_when(
    corpus: Path, env: dict[str, str], manifest: Path, where: str, at_least: int
) -> bool:
    """Start an ingest and SIGKILL it once ``at_least`` rows match; False if it ended first."""
    proc = subprocess.Popen(
        command("ingest", str(corpus)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and _count(manifest, where) < at_least:
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.005)  # polling a condition, not waiting for one
    killed = proc.poll() is None
    workers = psutil.Process(proc.pid).children(recursive=True) if killed else []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, "parse workers outlived the killed ingest"
    return killed


def _clean_and_crashed(tmp_path: Path, cache_dir: Path) -> tuple[Settings, Settings]:
    return (
        Settings(home=tmp_path / "clean", cache_dir=cache_dir),
        Settings(home=tmp_path / "crashed", cache_dir=cache_dir),
    )


def test_killed_ingests_converge_to_a_clean_ingest(tmp_path: Path, cache_dir: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus)
    clean, crashed = _clean_and_crashed(tmp_path, cache_dir)
    env = citewise_env(crashed.core.home, cache_dir)
    assert run_json("ingest", str(corpus), env=citewise_env(clean.core.home, cache_dir))[0] == 0

    # First ingest: killed before any file is done, then at three later points.
    kills = [_ingest_killed_when(corpus, env, crashed.manifest_path, "status='pending'", 1)]
    for done in (3, 8, 14):
        kills.append(_ingest_killed_when(corpus, env, crashed.manifest_path, "status='done'", done))
    assert kills[0], "the first ingest finished before it could be killed"

    code, report = run_json("ingest", str(corpus), env=env)
    assert code == 0 and report["failures"] == []
    assert snapshot(crashed) == snapshot(clean)


def test_killed_reingest_of_edits_and_deletions_converges(tmp_path: Path, cache_dir: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus)
    clean, crashed = _clean_and_crashed(tmp_path, cache_dir)
    env = citewise_env(crashed.core.home, cache_dir)
    for settings in (clean, crashed):
        assert (
            run_json("ingest", str(corpus), env=citewise_env(settings.core.home, cache_dir))[0] == 0
        )
    total = _count(crashed.manifest_path, "1")
    for path in sorted(corpus.rglob("*.md"))[:3]:
        path.write_text(path.read_text(encoding="utf-8") + "\n\nAppended line.\n", "utf-8")
    for path in sorted(corpus.rglob("*.txt"))[:2]:
        path.unlink()

    # Killed while the edits are pending, then while deleting the removed files.
    assert _ingest_killed_when(corpus, env, crashed.manifest_path, "status='pending'", 2)
    _ingest_killed_when(corpus, env, crashed.manifest_path, f"1 HAVING count(*) < {total}", 1)

    assert run_json("ingest", str(corpus), env=citewise_env(clean.core.home, cache_dir))[0] == 0
    code, _ = run_json("ingest", str(corpus), env=env)
    assert code == 0
    assert snapshot(crashed) == snapshot(clean)
