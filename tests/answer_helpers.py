"""Shared parts of the answer tests: one ingested sample home, SSE parsing, servers in threads."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from citewise.answer.generators.base import Turn
from citewise.search.embeddings import LocalEmbeddings
from citewise.search.store import Hit
from citewise.settings import Settings
from citewise.wiring import build_store
from ingest.pipeline import IngestPipeline
from tests.conftest import SAMPLE

# A second, tiny knowledge base next to the sample: it holds a fact the sample does not.
PARROTS_KB = "parrots"
PARROT_DOC = """# Office pets

## The parrot

The office parrot is called Captain Biscuit. He lives in the kitchen of the Lisbon office
and eats sunflower seeds every morning at eight o'clock.

## Visiting hours

Visitors may meet Captain Biscuit on Fridays between two and four in the afternoon.
"""

_SAMPLE_HOME = pytest.StashKey[Path]()


def ingest_into(
    settings: Settings, embeddings: LocalEmbeddings, path: Path, kb: str = "default"
) -> None:
    """Run the real ingest pipeline; every document must parse."""
    report = IngestPipeline(settings, build_store(settings), embeddings).run([path], kb)
    assert report.failures == [], report.failures


def sample_home(
    config: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
) -> Path:
    """A CITEWISE_HOME holding ``data/sample`` as ``default`` and the ``parrots`` knowledge base.

    Ingested once per test session (the first module that asks pays) and read-only afterwards:
    tests that change documents build their own home.
    """
    if _SAMPLE_HOME not in config.stash:
        home = tmp_path_factory.mktemp("sample-home")
        settings = Settings(home=home, cache_dir=cache_dir)
        ingest_into(settings, embeddings, SAMPLE)
        parrots = tmp_path_factory.mktemp("parrots")
        (parrots / "office-pets.md").write_text(PARROT_DOC, encoding="utf-8")
        ingest_into(settings, embeddings, parrots, kb=PARROTS_KB)
        config.stash[_SAMPLE_HOME] = home
    return config.stash[_SAMPLE_HOME]


class ExplodingGenerator:
    """A provider failing in a way nobody anticipated, with a path and a key in the message."""

    async def condense(self, question: str, history: Sequence[Turn]) -> str:
        return question

    async def stream(self, question: str, sources: Sequence[Hit]) -> AsyncIterator[str]:
        yield "Partial "
        raise RuntimeError("/srv/secret/config.py: key sk-live-123 exploded")


def parse_sse(lines: Iterable[str]) -> list[tuple[str, Any]]:
    """Server-sent events as ``(event name, decoded JSON data)``; comments (pings) skipped."""
    events: list[tuple[str, Any]] = []
    name, data = "message", []
    for line in [*lines, ""]:
        line = line.rstrip("\r")
        if not line:
            if data:
                text = "\n".join(data)
                events.append((name, text if text == "[DONE]" else json.loads(text)))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    return events


def sse_events(text: str) -> list[tuple[str, Any]]:
    return parse_sse(re.split(r"\r\n|\r|\n", text))


MARKER = re.compile(r"\s*\[\d{1,3}\]")


def without_markers(text: str) -> str:
    return MARKER.sub("", text)


def squash(text: str) -> str:
    """Whitespace runs as single spaces, for comparing answer text with passage text."""
    return " ".join(text.split())


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class _Server(uvicorn.Server):
    """A uvicorn server that says when its start-up is over (successful or not)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_over.set()


@contextmanager
def serve(
    app: Any, startup_timeout: float = 120.0, sock: socket.socket | None = None
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread (on ``sock`` if given); yields its URL."""
    sock = sock or free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws="none",
        http="h11",
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert server.startup_over.wait(startup_timeout), "server start-up timed out"
        assert server.started, "server failed to start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive(), "server thread did not stop"
