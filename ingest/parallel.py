"""Parse and chunk each document in a worker process that can be stopped, under a budget.

Two reasons for the processes. Parsing (unstructured, pypdf) is pure Python and can cost as
much as embedding, so it runs beside the ONNX model instead of before it. And a parser can be
made to spin or to balloon by a small hostile file (a quadratic Markdown pattern, a PDF whose
pages share one huge stream); a thread cannot be stopped, a process can. So every file is
parsed under a wall-clock and a memory budget (CITEWISE_PARSE_TIMEOUT_S, _MEMORY_MB): a
worker over either is killed, its file reported as failed with the reason, and a fresh worker
takes the next file.

Why not ``ProcessPoolExecutor``: it cannot stop one task, and a killed worker breaks the whole
pool. The parse processes here are few and simple: one pipe each, one file at a time. Idle
workers are kept for the next run in the same process (``--watch``, the job worker, tests),
since starting one and importing the parsers costs about two seconds.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from citewise import stored_chunk
from citewise.errors import DocumentError, EmptyDocument
from citewise.offline import prepare_offline
from citewise.settings import LimitSettings
from citewise.stored_chunk import Chunk
from ingest.chunking import Chunker
from ingest.discovery import SourceFile
from ingest.guards import ParseLimits
from ingest.loaders import parse_bytes
from ingest.opening import read_beneath
from ingest.web.extract import parse_page
from ingest.web.page import WebPage

# What a parse worker reads: a file, or a page a web source fetched (spooled to disk).
Item = SourceFile | WebPage

_MB = 1024 * 1024
_POLL_S = 0.05  # how often a busy worker's clock and memory are looked at
_START_TIMEOUT_S = 300.0  # a worker importing the parsers on a loaded machine
_AHEAD_PER_WORKER = 4  # parsed files held for a slow consumer, at most, per worker
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_tokens: int
    chunk_overlap: int
    encoding: str
    cache_dir: Path


@dataclass(frozen=True)
class ParseBudget:
    """What one file may cost a parse process; defaults match the settings' defaults."""

    seconds: float = 120.0
    memory_bytes: int = 2048 * _MB

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> ParseBudget:
        return cls(settings.parse_timeout_s, settings.parse_memory_mb * _MB)


@dataclass(frozen=True)
class Parsed:
    file: Item
    chunks: list[Chunk] | None
    error: str | None
    empty: bool = False  # parsed, but no text to index: skipped, not failed
    file_hash: str | None = None  # of the bytes that were parsed
    size: int | None = None


@lru_cache(maxsize=4)
def _chunker(config: ChunkingConfig) -> Chunker:
    prepare_offline(config.cache_dir)
    return Chunker(config.chunk_tokens, config.chunk_overlap, config.encoding)


def parse_and_chunk(
    file: Item, config: ChunkingConfig, limits: ParseLimits | None = None
) -> Parsed:
    """Read the file once (beneath its folder), parse and chunk those bytes, or say in one line
    why it cannot be. A web page's main content is read, and its chunks carry its URL."""
    limits = limits or ParseLimits()
    try:
        data = read_beneath(file.anchor, file.path, limits.max_file_bytes)
        file_hash = hashlib.sha256(data).hexdigest()
        if isinstance(file, WebPage):
            document = parse_page(data, file.source, limits, file.content_type)
            extra = {stored_chunk.URL: file.source}
            chunks = _chunker(config).chunk(document, file.source, extra)
        else:
            document = parse_bytes(data, file.path.name, limits)
            chunks = _chunker(config).chunk(document, file.source)
        return Parsed(file, chunks, None, file_hash=file_hash, size=len(data))
    except DocumentError as exc:
        return Parsed(file, None, str(exc), empty=isinstance(exc, EmptyDocument))
    except MemoryError:
        return Parsed(file, None, "ran out of memory while parsing")
    except Exception as exc:  # a parser bug must cost one file, never the run
        return Parsed(file, None, f"{type(exc).__name__} while parsing")


def parse_all(
    files: list[Item],
    config: ChunkingConfig,
    workers: int,
    limits: ParseLimits | None = None,
    budget: ParseBudget | None = None,
) -> Iterator[Parsed]:
    """Results in input order; parsing runs ahead of the consumer in worker processes.

    ``workers=0`` parses in this process, with no budget (a debugging aid)."""
    limits = limits or ParseLimits()
    if workers <= 0:
        for file in files:
            yield parse_and_chunk(file, config, limits)
        return
    if files:
        yield from _Run(files, config, limits, budget or ParseBudget(), workers).results()


class _Run:
    """One ``parse_all`` over worker processes: hands out files, watches each busy worker's
    clock and memory, and puts results back in input order."""

    def __init__(
        self,
        files: list[Item],
        config: ChunkingConfig,
        limits: ParseLimits,
        budget: ParseBudget,
        workers: int,
    ) -> None:
        self._files = files
        self._config = config
        self._limits = limits
        self._budget = budget
        self._crew = [_take_worker(config) for _ in range(min(workers, len(files)))]
        self._pending = deque(range(len(files)))
        self._done: dict[int, Parsed] = {}

    def results(self) -> Iterator[Parsed]:
        given = 0
        try:
            while given < len(self._files):
                if given in self._done:
                    yield self._done.pop(given)
                    given += 1
                    continue
                self._hand_out()
                self._collect()
        finally:
            for worker in self._crew:
                _give_back(worker)

    def _hand_out(self) -> None:
        room = _AHEAD_PER_WORKER * len(self._crew) - len(self._done)
        for worker in self._crew:
            if worker.idle and self._pending and room > 0:
                index = self._pending.popleft()
                worker.start(index, self._files[index], self._config, self._limits)
                room -= 1

    def _collect(self) -> None:
        busy = [w for w in self._crew if not w.idle]
        ready = set(wait([w.connection for w in busy], timeout=_POLL_S))
        for position, worker in enumerate(self._crew):
            if worker.idle:
                continue
            index, file = worker.task
            if worker.connection in ready:
                answer = worker.receive()
                if answer is None:  # the process died: a crash, or killed by the system
                    result = Parsed(file, None, f"the parser crashed ({worker.exit_reason()})")
                    self._crew[position] = _replace(worker, self._config)
                elif answer[1] > self._budget.memory_bytes:  # its peak, if it ended between looks
                    result = Parsed(file, None, self._over_memory())
                    self._crew[position] = _replace(worker, self._config)
                else:
                    result = answer[0]
                self._done[index] = result
            elif (reason := self._over_budget(worker)) is not None:
                self._done[index] = Parsed(file, None, reason)
                self._crew[position] = _replace(worker, self._config)

    def _over_budget(self, worker: _Worker) -> str | None:
        if worker.elapsed() > self._budget.seconds:
            return (
                f"still parsing after {self._budget.seconds:g} s, stopped "
                "(CITEWISE_PARSE_TIMEOUT_S)"
            )
        if worker.resident_bytes() > self._budget.memory_bytes:
            return self._over_memory()
        return None

    def _over_memory(self) -> str:
        return (
            f"parsing took more than {self._budget.memory_bytes / _MB:g} MB of memory, "
            "stopped (CITEWISE_PARSE_MEMORY_MB)"
        )


class _Worker:
    """A parse process: gets ``(file, config, limits)`` on its pipe and answers ``(Parsed,
    the peak resident bytes while parsing it)``."""

    def __init__(self, config: ChunkingConfig) -> None:
        # spawn, not fork: the parent may already hold onnxruntime and Chroma threads.
        context = multiprocessing.get_context("spawn")
        self.connection, their_end = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=_serve, args=(their_end, os.getpid(), config), daemon=True
        )
        self.process.start()
        their_end.close()
        self.task: tuple[int, Item] = (-1, SourceFile(Path("/"), Path("/"), ""))
        self.idle = True
        self._started = 0.0
        self._ready = False

    def start(self, index: int, file: Item, config: ChunkingConfig, limits: ParseLimits) -> None:
        self._await_ready()
        self.connection.send((file, config, limits))
        self.task, self.idle, self._started = (index, file), False, time.monotonic()

    def receive(self) -> tuple[Parsed, int] | None:
        try:
            result: tuple[Parsed, int] = self.connection.recv()
        except (EOFError, OSError):
            return None
        self.idle = True
        return result

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def resident_bytes(self) -> int:
        try:
            with open(f"/proc/{self.process.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return 0  # gone: the pipe says so on the next look

    def exit_reason(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()

    def _await_ready(self) -> None:
        """The first file waits for the imports: they are not part of any file's budget."""
        if self._ready:
            return
        if not self.connection.poll(_START_TIMEOUT_S):
            raise RuntimeError("a parse worker did not start")
        self.connection.recv()
        self._ready = True


_IDLE: list[_Worker] = []
_IDLE_LOCK = threading.Lock()


def _take_worker(config: ChunkingConfig) -> _Worker:
    with _IDLE_LOCK:
        while _IDLE:
            worker = _IDLE.pop()
            if worker.process.is_alive():
                return worker
            worker.stop()
    return _Worker(config)


def _give_back(worker: _Worker) -> None:
    if not worker.idle or not worker.process.is_alive():
        worker.stop()  # cut short mid-file (the consumer stopped early): no half answers
        return
    with _IDLE_LOCK:
        _IDLE.append(worker)


def _replace(worker: _Worker, config: ChunkingConfig) -> _Worker:
    worker.stop()
    return _Worker(config)


def _serve(connection: Connection, parent_pid: int, config: ChunkingConfig) -> None:
    """A worker's life: import the parsers, say so, then parse one file per message.

    Each file's peak memory goes back with its result: the parent samples a busy worker's
    size, and a file parsed between two looks would otherwise escape the budget."""
    _die_with_parent(parent_pid)
    _warm_up(config)
    connection.send("ready")
    while True:
        try:
            task: tuple[Any, ...] = connection.recv()
        except EOFError:
            return
        _reset_peak_memory()
        parsed = parse_and_chunk(*task)
        connection.send((parsed, _peak_memory()))


def _reset_peak_memory() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current size (Linux 4.0+)
    except OSError:
        pass  # the peak then covers earlier files too: stricter, never looser


def _peak_memory() -> int:
    try:
        with open("/proc/self/status", "rb") as status:
            line = next(line for line in status if line.startswith(b"VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        return 0


def _warm_up(config: ChunkingConfig) -> None:
    for module in (
        "pypdf",
        "unstructured.partition.md",
        "unstructured.partition.html",
        "unstructured.partition.docx",
        "trafilatura",
    ):
        importlib.import_module(module)
    _chunker(config)


def _die_with_parent(parent_pid: int) -> None:
    """Worker start-up: exit when the ingest that started us dies, even by SIGKILL.

    A killed parent cannot stop its workers, and an orphaned worker would linger forever.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
