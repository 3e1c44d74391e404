"""Parse and chunk documents in a worker process while the main process embeds.

Parsing (unstructured) is pure Python and can cost as much as embedding; running it in a
separate process keeps the ONNX model busy. Small batches are parsed inline, since starting a
worker (and importing unstructured in it) costs about two seconds.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from citewise.errors import DocumentError, EmptyDocument
from citewise.offline import prepare_offline
from citewise.stored_chunk import Chunk
from ingest.chunking import Chunker
from ingest.discovery import SourceFile
from ingest.guards import ParseLimits
from ingest.loaders import parse

INLINE_BELOW = 8  # files; fewer than this are parsed in-process


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_tokens: int
    chunk_overlap: int
    encoding: str
    cache_dir: Path


@dataclass(frozen=True)
class Parsed:
    file: SourceFile
    chunks: list[Chunk] | None
    error: str | None
    empty: bool = False  # parsed, but no text to index: skipped, not failed


@lru_cache(maxsize=4)
def _chunker(config: ChunkingConfig) -> Chunker:
    prepare_offline(config.cache_dir)
    return Chunker(config.chunk_tokens, config.chunk_overlap, config.encoding)


def parse_and_chunk(
    file: SourceFile, config: ChunkingConfig, limits: ParseLimits | None = None
) -> Parsed:
    """Parse one file into chunks, or say in one line why it cannot be."""
    try:
        document = parse(file.path, limits)
        return Parsed(file, _chunker(config).chunk(document, file.source), None)
    except DocumentError as exc:
        return Parsed(file, None, str(exc), empty=isinstance(exc, EmptyDocument))
    except Exception as exc:  # a parser bug must cost one file, never the run
        return Parsed(file, None, f"{type(exc).__name__} while parsing")


def parse_all(
    files: list[SourceFile],
    config: ChunkingConfig,
    workers: int,
    limits: ParseLimits | None = None,
) -> Iterator[Parsed]:
    """Results in input order; parsing runs ahead of the consumer in worker processes."""
    if workers <= 0 or len(files) < INLINE_BELOW:
        for file in files:
            yield parse_and_chunk(file, config, limits)
        return
    # spawn, not fork: the parent may already hold onnxruntime and Chroma threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        yield from pool.map(
            parse_and_chunk, files, [config] * len(files), [limits] * len(files), chunksize=2
        )


def _die_with_parent(parent_pid: int) -> None:
    """Worker start-up: exit when the ingest that started us dies, even by SIGKILL.

    A killed parent cannot shut its pool down, and an orphaned worker would linger forever.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
