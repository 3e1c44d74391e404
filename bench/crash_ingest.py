"""Kill -9 an ingest at 20 random moments; every re-run must equal a clean ingest.

The test suite kills ingests at a few chosen points (tests/test_crash.py); this goes wider and
takes longer, so it lives here. Ten trials kill a first ingest of a fresh home, ten kill the
re-ingest of an edit (three files changed, two deleted, one added) over a complete one. Each
kill lands at a uniformly random moment within the time a clean run of that phase takes
(measured first), with SIGKILL to the ingest and its parse workers. Then the same command runs
again to completion, and its knowledge base is compared with a clean ingest of the same files:
every chunk id and content hash in Chroma, and the BM25 index generation (ids and metadata).

Run:  .venv/bin/python bench/crash_ingest.py [--trials 20] [--seed 7]
Writes bench/results/crash_ingest.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

import psutil

from citewise.settings import Settings
from citewise.wiring import build_lexical, build_store

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "data" / "sample"
SUBSET = ["account", "billing", "invoices", "security"]  # 12 files, every format


def run(home: Path, corpus: Path, *, kill_after: float | None = None) -> bool:
    """Ingest ``corpus`` into ``home``; with ``kill_after``, SIGKILL it then. True if killed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEWISE_")}
    env |= {"CITEWISE_HOME": str(home), "CITEWISE_REDIS_URL": "off"}
    command = [sys.executable, "-m", "cli", "ingest", str(corpus), "--json"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate(timeout=900)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"ingest failed: {err.decode()[-500:]}")
        return False
    try:
        proc.wait(timeout=kill_after)
        return False  # it finished first
    except subprocess.TimeoutExpired:
        pass
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    for child in children:
        child.kill()
    proc.wait()
    psutil.wait_procs(children, timeout=15)
    return True


def state(home: Path) -> dict[str, Any]:
    settings = Settings(home=home)
    return {
        "chunks": build_store(settings).knowledge_base("default").snapshot(),
        "bm25": build_lexical(settings).current_generation("default"),
    }


def edit(corpus: Path) -> None:
    for path in sorted(corpus.rglob("*.md"))[:3]:
        path.write_text(path.read_text(encoding="utf-8") + "\n\nAn appended line.\n", "utf-8")
    for path in sorted(corpus.rglob("*.txt"))[:2]:
        path.unlink()
    (corpus / "billing" / "new-page.md").write_text(
        "# Gift cards\n\nTallybird gift cards never expire and cover any plan.\n", "utf-8"
    )


def timed_run(home: Path, corpus: Path) -> float:
    started = time.perf_counter()
    run(home, corpus)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "crash_ingest.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="citewise-crash-"))
    try:
        before, after = work / "before", work / "after"
        for folder in SUBSET:
            shutil.copytree(SAMPLE / folder, before / folder)
        shutil.copytree(before, after)
        edit(after)
        # Clean references, and how long each phase takes when nothing interrupts it.
        first_s = timed_run(work / "clean-before", before)
        shutil.copytree(work / "clean-before", work / "clean-after")
        edit_s = timed_run(work / "clean-after", after)
        expected = {"first": state(work / "clean-before"), "edit": state(work / "clean-after")}

        trials: list[dict[str, Any]] = []
        for number in range(args.trials):
            phase = "first" if number % 2 == 0 else "edit"
            home = work / f"trial-{number}"
            if phase == "edit":
                shutil.copytree(work / "clean-before", home)
            corpus = before if phase == "first" else after
            span = first_s if phase == "first" else edit_s
            moment = rng.uniform(0.05, 1.0) * span
            killed = run(home, corpus, kill_after=moment)
            run(home, corpus)  # the re-run
            converged = state(home) == expected[phase]
            trials.append(
                {"phase": phase, "kill_after_s": round(moment, 2), "killed": killed,
                 "converged": converged}
            )  # fmt: skip
            print(f"trial {number:2} {phase:5} kill at {moment:5.2f}s killed={killed} "
                  f"converged={converged}")  # fmt: skip
            shutil.rmtree(home, ignore_errors=True)

        files = len(list(before.rglob("*.*")))
        result = {
            "corpus": f"data/sample/{{{','.join(SUBSET)}}} ({files} files)",
            "clean_seconds": {"first": round(first_s, 2), "edit": round(edit_s, 2)},
            "seed": args.seed,
            "trials": trials,
            "killed": sum(t["killed"] for t in trials),
            "converged": sum(t["converged"] for t in trials),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps({k: v for k, v in result.items() if k != "trials"}))
        if result["converged"] != len(trials):
            raise SystemExit("some re-runs did not converge to a clean ingest")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
