"""A minute of questions while another process keeps re-ingesting: no 5xx, new text found.

The test suite runs a few rounds of this (tests/test_live_reingest.py); this runs for longer.
A server (``uvicorn --factory api.main:create_app``, as shipped) answers over loopback from a
home holding a small folder of pages; a client asks and searches in a closed loop; meanwhile
``citewise ingest`` runs again and again in other processes, each time after editing one page
(a new made-up word replaces the old one), deleting one and adding one. After each ingest
the client checks that the new word is found and the old one is gone. Embedded Chroma by
default (the case that answered 500 before the store followed other processes' writes);
``--chroma-url`` runs it against a Chroma server.

Run:  .venv/bin/python bench/live_reingest.py [--seconds 60] [--chroma-url URL]
Writes bench/results/live_reingest.json (one entry per kind of store).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "live_reingest.json"


def page(title: str, word: str) -> str:
    return f"# {title}\n\nThe {word} setting controls how invoices are grouped each month.\n"


def made_up(kind: str, n: int) -> str:
    """A word no page shares with another: letters only (the BM25 tokenizer splits digits off,
    so "word7" would match every "wordN" and every page with a 7)."""
    letters, spelled = "bcdfghjklmnpqrstvwz", ""
    while True:
        n, digit = divmod(n, len(letters))
        spelled += letters[digit] + "o"
        if n == 0:
            return f"{kind}{spelled}x"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(home: Path, chroma_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEWISE_")}
    env |= {
        "CITEWISE_HOME": str(home),
        "CITEWISE_RATE_LIMIT_SEARCH_PER_IP": "none",
        "CITEWISE_RATE_LIMIT_ASK_PER_IP": "none",
    }
    if chroma_url:
        env |= {"CITEWISE_CHROMA_URL": chroma_url, "CITEWISE_BM25_SYNC_S": "0"}
    return env


def ingest(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "ingest", str(folder), "--kb", "live", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"ingest failed: {done.stdout} {done.stderr[-800:]}")
    return dict(json.loads(done.stdout))


class Asker(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                word = f"word{n % 7}"
                for path, body in (
                    ("/v1/ask", {"question": f"What does the {word} setting do?", "kb": "live"}),
                    ("/v1/search", {"query": f"{word} setting", "kb": "live"}),
                ):
                    self.statuses[client.post(path, json=body).status_code] += 1


def found(client: httpx.Client, word: str) -> list[str]:
    hits = client.post("/v1/search", json={"query": word, "kb": "live", "k": 3}).json()["hits"]
    return [h["source"] for h in hits if word in h["text"]]


def _settled(
    client: httpx.Client, new_word: str, old_word: str, page: str, within_s: float
) -> float | None:
    """Seconds until the new word is found on its page and the old one nowhere; None if that
    takes longer than ``within_s``."""
    began = time.monotonic()
    while True:
        if found(client, new_word) == [page] and not found(client, old_word):
            return time.monotonic() - began
        if time.monotonic() - began > within_s:
            return None
        time.sleep(0.02)  # polling interval of a measurement, not a synchronisation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chroma-url", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="citewise-live-"))
    docs = work / "docs"
    docs.mkdir()
    for n in range(6):
        (docs / f"page-{n}.md").write_text(page(f"Page {n}", made_up("start", n)), "utf-8")
    env = environment(work / "home", args.chroma_url)
    ingest(docs, env)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 120
            while True:  # readiness poll with a deadline
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
            asker = Asker(url)
            asker.start()
            rounds, stale, ingest_seconds = 0, 0, []
            settle_seconds: list[float] = []
            misses: list[dict[str, Any]] = []
            started = time.monotonic()
            while time.monotonic() - started < args.seconds:
                rounds += 1
                edited = docs / f"page-{rounds % 6}.md"
                new_word = made_up("round", rounds)
                old_word = edited.read_text("utf-8").split()[4]
                edited.write_text(page(f"Page {rounds % 6}", new_word), "utf-8")
                extra = docs / f"extra-{rounds}.md"
                extra.write_text(page(f"Extra {rounds}", made_up("extra", rounds)), "utf-8")
                previous = docs / f"extra-{rounds - 1}.md"
                if previous.exists():
                    previous.unlink()
                began = time.monotonic()
                ingest(docs, env)
                ingest_seconds.append(time.monotonic() - began)
                # The promise is "within a second": poll that long before counting a miss.
                settled = _settled(client, new_word, old_word, edited.name, within_s=1.0)
                if settled is None:
                    stale += 1
                    hits = client.post(
                        "/v1/search", json={"query": new_word, "kb": "live", "k": 5}
                    ).json()["hits"]
                    misses.append(
                        {
                            "round": rounds,
                            "new_word": new_word,
                            "page": edited.name,
                            "hits": [[h["source"], h["text"][:40]] for h in hits],
                        }
                    )
                else:
                    settle_seconds.append(settled)
            asker.stop.set()
            asker.join(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=60)
    requests = sum(asker.statuses.values())
    result = {
        "store": "server" if args.chroma_url else "embedded",
        "seconds": round(args.seconds, 1),
        "re_ingests": rounds,
        "ingest_seconds_median": round(sorted(ingest_seconds)[len(ingest_seconds) // 2], 2),
        "requests": requests,
        "statuses": {str(k): v for k, v in sorted(asker.statuses.items())},
        "server_errors": sum(v for k, v in asker.statuses.items() if k >= 500),
        "rounds_not_settled_within_1s": stale,
        "settle_seconds_max": round(max(settle_seconds, default=0.0), 3),
        "misses": misses,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    # One entry per kind of store, so the embedded and server runs sit side by side.
    recorded = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    recorded[result["store"]] = result
    RESULTS.write_text(json.dumps(recorded, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
