"""A queued ingest shared by many workers: its files cut into shards any worker may take.

The job's own worker (the **coordinator**) runs the ingest as one worker always has: it holds
the knowledge base's lock, walks the folders, hashes every file against the manifest. When
the files to parse fill more than one shard (``split``: ``CITEWISE_INGEST_SHARD_FILES`` files
or ``CITEWISE_INGEST_SHARD_MB``, whichever comes first) and the store is a Chroma server that
every worker reaches, it

1. marks every one of those files ``pending`` in the manifest, in one transaction, before any
   shard changes Chroma: a job that dies anywhere leaves them to be re-derived by the next
   ingest, exactly as a single worker killed mid-run leaves the files it had started;
2. puts the shards on a board in Redis (``citewise.job_shards``) and queues a helper job;
3. takes shards itself, like any helper, until none waits; then waits for the others'
   results, handing a shard whose lease ran out (its worker died) to the next taker;
4. writes each finished shard's files ``done`` in the manifest (helpers never write it: only
   the coordinator does, so SQLite has one writer per ingest), and then, as before, deletes
   the documents gone from the folders and publishes the BM25 index and the corpus version,
   once, after every shard is in.

A helper (``ingest.jobs.run_shard_helper``) takes shards while the coordinator is alive and
any wait; each helper, on taking a shard, queues one more helper if none is waiting, so an
idle worker (here or on another machine) always finds one on the queue while shards remain.
A shard's worker parses, diffs against Chroma and embeds exactly as the single-worker ingest
does (``IngestPipeline.store_files``), so the end state is the same: the same chunk ids and
content hashes, the same manifest.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from citewise.errors import ShardAbandoned
from citewise.job_shards import ATTEMPTS, Lease, ShardBoard
from citewise.search.store import KnowledgeBase
from citewise.settings import IngestSettings
from ingest.discovery import SourceFile
from ingest.manifest import DONE, PENDING, FileRecord, Manifest
from ingest.pipeline import IngestPipeline, Todo
from ingest.report import IngestReport

log = logging.getLogger("citewise.ingest.sharding")

_MB = 1024 * 1024
WAIT_S = 1.0  # longest the coordinator blocks for a result before looking at leases


def split(todo: list[Todo], files: int, max_bytes: int) -> list[list[Todo]]:
    """Consecutive runs of ``todo``: a run closes at ``files`` files or when the next file
    would take it past ``max_bytes`` (a file larger than that is a run of its own)."""
    shards: list[list[Todo]] = []
    current: list[Todo] = []
    size = 0
    for item in todo:
        if current and (len(current) >= files or size + item.size > max_bytes):
            shards.append(current)
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        shards.append(current)
    return shards


def encode(shard: list[Todo]) -> str:
    return json.dumps(
        [
            [str(f.root), str(f.path), f.source, None if f.confine is None else str(f.confine),
             t.file_hash, t.is_new, t.size]
            for t, f in ((t, _file_of(t)) for t in shard)
        ]
    )  # fmt: skip


def _file_of(todo: Todo) -> SourceFile:
    """Only files are shared out: a web source's pages are fetched and stored by one worker
    (``IngestPipeline.run_web`` takes no sharder)."""
    if not isinstance(todo.file, SourceFile):
        raise TypeError(f"not a file: {todo.file.source}")
    return todo.file


def decode(description: str) -> list[Todo]:
    return [
        Todo(SourceFile(Path(root), Path(path), source, None if confine is None else Path(confine)),
             file_hash, is_new, size)
        for root, path, source, confine, file_hash, is_new, size in json.loads(description)
    ]  # fmt: skip


class Coordinator:
    """Shares one job's files out (``ingest.pipeline.Sharder``); built by the job's body."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        board: ShardBoard,
        settings: IngestSettings,
        token: str,
        queue_helper: Callable[[], None],
    ) -> None:
        self._pipeline = pipeline
        self._board = board
        self._settings = settings
        self._token = token
        self._queue_helper = queue_helper
        self._before: dict[str, FileRecord] = {}  # the manifest's rows before this job

    def store(
        self, todo: list[Todo], target: KnowledgeBase, manifest: Manifest, report: IngestReport
    ) -> bool:
        pipeline = self._pipeline
        settings = self._settings
        shards = split(todo, settings.shard_files, int(settings.shard_mb * _MB))
        if len(shards) < 2:
            return False
        self._before = manifest.records()
        rows = [FileRecord(t.file.source, str(t.file.root), t.file_hash, PENDING, 0) for t in todo]
        manifest.mark_many(rows)
        board = self._board
        board.publish([encode(shard) for shard in shards], len(todo))
        log.info("ingest of %d files into %r cut into %d shards", len(todo), report.kb, len(shards))
        parts: dict[int, dict[str, Any]] = {}
        try:
            with _Keeper(board, settings.shard_lease_s, coordinator=True) as keeper:
                more_hands(board, self._queue_helper, force=True)
                while len(parts) < len(shards):
                    while (number := board.pop_completed()) is not None:
                        parts[number] = self._absorb(number, shards[number], manifest)
                    if len(parts) == len(shards):
                        break
                    self._hand_on(shards)
                    lease = board.take(self._token, settings.shard_lease_s)
                    if lease is not None:
                        more_hands(board, self._queue_helper)
                        work_shard(pipeline, target, lease, board, keeper)
                        continue
                    number = board.next_completed(min(WAIT_S, settings.shard_lease_s / 3))
                    if number is not None:
                        parts[number] = self._absorb(number, shards[number], manifest)
        finally:
            board.close()
        for number in sorted(parts):  # in file order, as one worker would have reported them
            report.absorb(IngestReport.from_json(parts[number]["report"]))
            pipeline.emptied.extend(parts[number]["emptied"])
        return True

    def _absorb(self, number: int, shard: list[Todo], manifest: Manifest) -> dict[str, Any]:
        """A finished shard's stored files, written ``done`` (the coordinator is the one
        writer). Its files that failed or had no text were never written to Chroma: their rows
        go back to what they were, as if never marked, when this was the shard's only attempt
        (after a worker died mid-shard, one may have been half written: it stays pending, for
        the next ingest to re-derive). Emptied documents are forgotten by the pipeline."""
        result = self._board.result(number)
        stored = {source for source, *_ in result["stored"]}
        rows = [FileRecord(source, root, file_hash, DONE, chunks, bytes=size)
                for source, root, file_hash, chunks, size in result["stored"]]  # fmt: skip
        untouched = [t.file.source for t in shard if t.file.source not in stored]
        untouched = [source for source in untouched if source not in result["emptied"]]
        if self._board.attempts(number) == 1:
            rows += [self._before[s] for s in untouched if s in self._before]
            for source in untouched:
                if source not in self._before:
                    manifest.forget(source)
        manifest.mark_many(rows)
        return result

    def _hand_on(self, shards: list[list[Todo]]) -> None:
        for number in self._board.reclaim():
            attempts = self._board.attempts(number)
            first = shards[number][0].file.source
            if attempts >= ATTEMPTS:
                raise ShardAbandoned(
                    f"the workers given shard {number} ({len(shards[number])} files from "
                    f"{first!r}) stopped {attempts} times without finishing it; see their logs"
                )
            log.warning(
                "shard %d (from %r): its worker stopped renewing its lease; handed on",
                number,
                first,
            )


def help_out(
    pipeline: IngestPipeline,
    board: ShardBoard,
    kb: str,
    settings: IngestSettings,
    token: str,
    queue_helper: Callable[[], None],
) -> int:
    """A helper job's work: shards of the coordinator's ingest while any wait; how many."""
    board.helper_queued(-1)
    done = 0
    knowledge_base: KnowledgeBase | None = None
    with _Keeper(board, settings.shard_lease_s, coordinator=False) as keeper:
        while board.alive():
            lease = board.take(token, settings.shard_lease_s)
            if lease is None:
                break
            more_hands(board, queue_helper)
            if knowledge_base is None:
                pipeline.store.follow(kb, pipeline.lexical.current_generation(kb))
                knowledge_base = pipeline.store.knowledge_base(kb)
            done += work_shard(pipeline, knowledge_base, lease, board, keeper)
    return done


def more_hands(board: ShardBoard, queue_helper: Callable[[], None], *, force: bool = False) -> None:
    """Queue a helper job if shards wait and no helper does (one always waits while work
    remains, for whichever worker is free next)."""
    if force or (board.waiting() > 0 and board.helpers_queued() <= 0):
        board.helper_queued(+1)
        queue_helper()


def work_shard(
    pipeline: IngestPipeline,
    knowledge_base: KnowledgeBase,
    lease: Lease,
    board: ShardBoard,
    keeper: _Keeper,
) -> bool:
    """Store one shard's files and report them; False if its lease was lost meanwhile (the
    next holder stores them again: every write is idempotent, and only the holder reports)."""
    todo = decode(lease.description)
    part = IngestReport(kb=knowledge_base.kb)
    ledger = _ShardLedger(keeper)
    emptied: list[str] = []
    keeper.hold(lease)
    try:
        progress = _BoardProgress(board, lease)
        pipeline.store_files(todo, knowledge_base, ledger, part, progress, emptied)
    except _LeaseLost:
        log.warning("lost the lease of shard %d; another worker stores it", lease.number)
        return False
    finally:
        keeper.release()
    result = {"report": part.to_json(), "stored": ledger.rows, "emptied": emptied}
    return not keeper.lost and board.complete(lease, result)


class _LeaseLost(Exception):
    pass


class _ShardLedger:
    """A shard's files, as the coordinator will write them: nothing is written here."""

    def __init__(self, keeper: _Keeper) -> None:
        self._keeper = keeper
        self.rows: list[list[Any]] = []

    def pending(self, todo: Todo, file_hash: str) -> None:
        if self._keeper.lost:  # stop writing to Chroma what another worker now owns
            raise _LeaseLost

    def done(self, todo: Todo, file_hash: str, chunks: int, size: int | None) -> None:
        self.rows.append([todo.file.source, str(todo.file.root), file_hash, chunks, size])
        if self._keeper.lost:
            raise _LeaseLost


class _BoardProgress:
    def __init__(self, board: ShardBoard, lease: Lease) -> None:
        self._board = board
        self._lease = lease

    def start(self, total: int) -> None:
        pass

    def advance(self, description: str) -> None:
        self._board.file_done(self._lease)


class _Keeper:
    """Renews the lease of the shard being worked on (and, for the coordinator, its own
    liveness) from a thread, every third of the lease, while the work goes on."""

    def __init__(self, board: ShardBoard, lease_s: float, *, coordinator: bool) -> None:
        self._board = board
        self._lease_s = lease_s
        self._coordinator = coordinator
        self._stop = threading.Event()
        self._lease: Lease | None = None
        self.lost = False
        self._thread = threading.Thread(target=self._run, name="shard-lease", daemon=True)

    def __enter__(self) -> _Keeper:
        if self._coordinator:
            self._board.mark_alive(self._lease_s)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def hold(self, lease: Lease) -> None:
        self._lease, self.lost = lease, False

    def release(self) -> None:
        self._lease = None

    def _run(self) -> None:
        while not self._stop.wait(self._lease_s / 3):
            try:
                if self._coordinator:
                    self._board.mark_alive(self._lease_s)
                lease = self._lease
                if lease is not None and not self._board.renew(lease, self._lease_s):
                    self.lost = True
            except redis.RedisError as exc:  # tried again; the lease may run out meanwhile
                log.warning("could not renew a shard lease: %s", exc)
