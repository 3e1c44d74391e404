"""Ingest jobs on a queue: RQ over the service's Redis, run by ``citewise worker``.

Why RQ: an ingest is synchronous, CPU-bound Python that loads a model and may run for minutes;
RQ runs each job in a forked work horse (a crash or a memory blow-up kills that job, not the
worker), keeps status, progress (``job.meta``) and results in Redis where any API replica can
read them, and needs nothing but the Redis Citewise already has. arq is asyncio-first (our
pipeline is not) and Celery brings a broker abstraction and a much larger surface for one
queue of one job type.

One job per knowledge base at a time: submitting claims ``prefix:ingest-claim:<kb>``
(atomically, and only if no live job holds it); the job releases it when it ends. The claim is
first ``pending:<job id>`` with a short lifetime, while the submitter gets the job ready (an
upload moves its files into the knowledge base's folder) and queues it; then it becomes the
job's id, for as long as the job may run. A pending claim counts as live, so nothing else gets
in between; one left by a submitter that died expires by itself. A claim left by a worker
killed mid-job is recognised because its job is no longer queued or running, and is taken
over. The pipeline's own file lock still guards against a second ingest started from the
command line.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, Retry

from citewise.errors import JobNotFound, KnowledgeBaseBusy
from citewise.job_shards import ShardBoard
from citewise.redis_client import RedisHandle
from citewise.settings import IngestSettings

log = logging.getLogger("citewise.job_queue")

LIVE = {
    JobStatus.CREATED,
    JobStatus.QUEUED,
    JobStatus.STARTED,
    JobStatus.DEFERRED,
    JobStatus.SCHEDULED,
}
PROGRESS_EVERY_S = 0.5  # how often a running job writes its progress to Redis
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# The job's body lives with the ingest face; RQ imports it by name in the worker.
JOB_FUNCTION = "ingest.jobs.run_ingest_job"
# A job that helps a sharded ingest (``ingest.sharding``): any worker may run it.
HELPER_FUNCTION = "ingest.jobs.run_shard_helper"
HELPER_RESULT_TTL_S = 600
PENDING = "pending:"  # a claim whose job is being prepared and queued
PENDING_S = 120  # how long a pending claim lasts if its submitter never finishes
_CONFIRM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return 0
"""
_RENEW = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] or held == ARGV[3] or not held then
  return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Runs once the knowledge base is claimed, before its job is queued; returns how to undo it.
Prepare = Callable[[], Callable[[], None]]


def new_job_id() -> str:
    return uuid.uuid4().hex


def queue_name(prefix: str) -> str:
    return f"{prefix}-ingest"


def claim_key(prefix: str, kb: str) -> str:
    return f"{prefix}:ingest-claim:{kb}"


@dataclass(frozen=True)
class JobView:
    """A job as ``GET /v1/jobs/{id}`` shows it (``dataclasses.asdict``: fields in this order)."""

    job_id: str
    kb: str
    state: str
    progress: dict[str, Any]
    enqueued_at: float | None
    started_at: float | None
    ended_at: float | None
    report: dict[str, Any] | None
    error: dict[str, str] | None
    gate: dict[str, Any] | None  # the golden questions' verdict, for a gated ingest


@dataclass(frozen=True)
class QueueHealth:
    """Whether queued jobs will run: how many wait, and how many workers listen."""

    waiting: int
    workers: int  # registered on this queue; a worker's registration expires without heartbeats

    @property
    def served(self) -> bool:
        """False when jobs wait and no worker will take them."""
        return self.waiting == 0 or self.workers > 0


class JobQueue:
    """Submits ingest jobs and reads their state (sync: call from a thread in async code)."""

    def __init__(self, handle: RedisHandle, settings: IngestSettings) -> None:
        self._redis: redis.Redis = handle.sync
        self._prefix = handle.prefix
        self._timeout_s = settings.job_timeout_s
        self._keep_s = settings.job_result_ttl_s
        self._claim_s = claim_ttl(settings)
        # RQ runs a job again when its worker died mid-job (noticed by another worker's
        # registry maintenance); the job itself makes sure it is never run again after it
        # failed by itself (ingest.jobs). Helper jobs need none: their shards' leases hand on.
        self._handover = Retry(max=settings.job_handovers) if settings.job_handovers else None
        self.queue = Queue(queue_name(handle.prefix), connection=self._redis)

    def submit(
        self,
        kb: str,
        paths: list[str],
        *,
        rebuild: bool = False,
        job_id: str | None = None,
        prepare: Prepare | None = None,
        web: dict[str, Any] | None = None,
    ) -> JobView:
        """Queue an ingest of ``paths`` into ``kb``; ``KnowledgeBaseBusy`` if one is live.

        ``prepare`` runs while the knowledge base is claimed and before the job is queued (so
        no job of that knowledge base runs meanwhile); if queueing fails, what it did is undone
        and the claim released. ``web``: ``paths`` is one URL, a web source with these options
        (``include``, ``exclude``, ``max_pages``, ``crawl``)."""
        job_id = job_id or new_job_id()
        key, pending = claim_key(self._prefix, kb), PENDING + job_id
        self._claim(kb, pending, ttl=PENDING_S)
        undo = None
        try:
            if prepare is not None:
                undo = prepare()
            job = self.queue.enqueue_call(
                JOB_FUNCTION,
                args=(kb, paths, rebuild, self._prefix, *([web] if web is not None else [])),
                job_id=job_id,
                timeout=self._timeout_s,
                result_ttl=self._keep_s,
                failure_ttl=self._keep_s,
                retry=self._handover,
                meta={"kb": kb, "progress": {"done": 0, "total": None, "current": None}},
                description=f"ingest into {kb}",
            )
        except BaseException:
            try:
                if undo is not None:
                    undo()
            finally:
                self._release(key, pending)
            raise
        # The job may already have run and ended (its release found the pending claim, not
        # its id): the claim then names an ended job, which is not live.
        self._redis.eval(_CONFIRM, 1, key, pending, job_id, self._claim_s)
        return view(job)

    def check_free(self, kb: str) -> None:
        """``KnowledgeBaseBusy`` if a job of ``kb`` is live now (a hint: ``submit`` decides)."""
        raw = self._redis.get(claim_key(self._prefix, kb))
        holder = raw.decode() if isinstance(raw, bytes) else raw
        if holder is not None and _live(holder, self._redis):
            raise _busy(kb, holder)

    def _release(self, key: str, value: str) -> None:
        try:
            release_claim(self._redis, key, value)
        except redis.RedisError:  # it expires by itself
            log.warning("could not release a pending ingest claim; it expires in %ss", PENDING_S)

    def get(self, job_id: str) -> JobView:
        if not _JOB_ID.match(job_id):  # ours are uuid4 hex; RQ raises on odd characters
            raise JobNotFound(f"no ingest job {job_id[:64]!r}")
        try:
            job = Job.fetch(job_id, connection=self._redis)
        except NoSuchJobError as exc:
            raise JobNotFound(f"no ingest job {job_id!r} (finished jobs are kept a week)") from exc
        if job.func_name != JOB_FUNCTION:
            raise JobNotFound(f"no ingest job {job_id!r}")
        return view(job, ShardBoard(self._redis, self._prefix, job.id))

    def depth(self) -> int:
        """Jobs waiting to start."""
        return int(self.queue.count)

    def health(self) -> QueueHealth:
        """Waiting jobs and live workers. RQ keeps each worker's registration under a key its
        heartbeat renews: one that stopped is unregistered, one that was killed expires after
        its TTL without heartbeats (CITEWISE_WORKER_CHECK_S + 15 s idle; busy, its job's
        heartbeat's: 90 s at the default, cli/rq_worker.py)."""
        return QueueHealth(self.depth(), len(Worker.all(queue=self.queue)))

    def _claim(self, kb: str, value: str, *, ttl: int) -> None:
        key = claim_key(self._prefix, kb)
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    holder = raw.decode() if isinstance(raw, bytes) else raw
                    if holder is not None and _live(holder, self._redis):
                        raise _busy(kb, holder)
                    pipe.multi()
                    pipe.set(key, value, ex=ttl)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue  # someone else claimed or released meanwhile: look again


def queue_helper(
    connection: redis.Redis, prefix: str, job_id: str, kb: str, settings: IngestSettings
) -> None:
    """Queue a job that takes shards of job ``job_id``'s ingest into ``kb``."""
    Queue(queue_name(prefix), connection=connection).enqueue_call(
        HELPER_FUNCTION,
        args=(job_id, kb, prefix),
        timeout=settings.job_timeout_s,
        result_ttl=HELPER_RESULT_TTL_S,
        failure_ttl=settings.job_result_ttl_s,
        description=f"help ingest {job_id} into {kb}",
    )


def claim_ttl(settings: IngestSettings) -> int:
    """How long a job's claim on its knowledge base lasts: as long as the job may run, and
    ten minutes for it to wait on the queue."""
    return settings.job_timeout_s + 600


def renew_claim(connection: redis.Redis, key: str, job_id: str, ttl: int) -> bool:
    """Hold the claim ``key`` for ``job_id`` for ``ttl`` seconds from now, unless another job
    holds it; whether it is held. A job renews it as each run starts: a run after its worker
    died may start long after the claim made at submission would expire. A first run may
    start before its submitter turned the pending claim into the job's id: it is the job's."""
    return bool(connection.eval(_RENEW, 1, key, job_id, ttl, PENDING + job_id))


def release_claim(connection: redis.Redis, key: str, value: str) -> None:
    """Drop the claim ``key`` if it still holds ``value`` (a job's id, or its pending claim)."""
    connection.eval(_RELEASE, 1, key, value)


def _busy(kb: str, holder: str) -> KnowledgeBaseBusy:
    return KnowledgeBaseBusy(
        f"an ingest of knowledge base {kb!r} is already queued or running "
        f"(job {holder.removeprefix(PENDING)}); wait for it to finish"
    )


def _live(holder: str, connection: redis.Redis) -> bool:
    if holder.startswith(PENDING):  # being queued now; expires by itself if never finished
        return True
    job_id = holder
    try:
        return Job.fetch(job_id, connection=connection).get_status() in LIVE
    except NoSuchJobError:
        return False


def view(job: Job, board: ShardBoard | None = None) -> JobView:
    """A job's state; with ``board``, a sharded ingest's progress counts every worker's files
    and the shards done (``shards_done``, ``shards_total``, ``shards_retried``)."""
    meta = job.meta or {}
    progress = dict(meta.get("progress") or {})
    shards = board.progress() if board is not None else None
    if shards and shards["shards_total"]:
        progress |= {
            "done": shards["files_done"],
            "total": shards["files_total"],
            "shards_done": shards["shards_done"],
            "shards_total": shards["shards_total"],
            "shards_retried": shards["retried"],
        }
    runs = int(meta.get("runs") or 1)
    if runs > 1:  # run again after its worker died (``job_handovers``)
        progress["handovers"] = runs - 1
    status = job.get_status(refresh=False)
    report = job.return_value() if status == JobStatus.FINISHED else None
    error = meta.get("error")
    if status == JobStatus.FAILED and error is None:  # killed, timed out, or a bug
        error = {"code": "job_failed", "message": "the ingest job stopped; see the worker log"}
    return JobView(
        job_id=job.id,
        kb=str(meta.get("kb", "")),
        state=str(status.value if status is not None else "unknown"),
        progress=progress,
        enqueued_at=_epoch(job.enqueued_at),
        started_at=_epoch(job.started_at),
        ended_at=_epoch(job.ended_at),
        report=report if isinstance(report, dict) else None,
        error=error,
        gate=meta.get("gate"),
    )


def _epoch(moment: Any) -> float | None:
    return moment.timestamp() if moment is not None else None
