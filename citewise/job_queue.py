"""Ingest jobs on a queue: RQ over the service's Redis, run by ``citewise worker``.

Why RQ: an ingest is synchronous, CPU-bound Python that loads a model and may run for minutes;
RQ runs each job in a forked work horse (a crash or a memory blow-up kills that job, not the
worker), keeps status, progress (``job.meta``) and results in Redis where any API replica can
read them, and needs nothing but the Redis Citewise already has. arq is asyncio-first (our
pipeline is not) and Celery brings a broker abstraction and a much larger surface for one
queue of one job type.

One job per knowledge base at a time: submitting claims ``prefix:ingest-claim:<kb>`` with the
job's id (atomically, and only if no live job holds it); the job releases it when it ends. A
claim left by a worker killed mid-job is recognised because its job is no longer queued or
running, and is taken over. The pipeline's own file lock still guards against a second ingest
started from the command line.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from citewise.errors import JobNotFound, KnowledgeBaseBusy
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


class JobQueue:
    """Submits ingest jobs and reads their state (sync: call from a thread in async code)."""

    def __init__(self, handle: RedisHandle, settings: IngestSettings) -> None:
        self._redis: redis.Redis = handle.sync
        self._prefix = handle.prefix
        self._timeout_s = settings.job_timeout_s
        self._keep_s = settings.job_result_ttl_s
        self.queue = Queue(queue_name(handle.prefix), connection=self._redis)

    def submit(self, kb: str, paths: list[str], *, rebuild: bool = False) -> JobView:
        """Queue an ingest of ``paths`` into ``kb``; ``KnowledgeBaseBusy`` if one is live."""
        job_id = uuid.uuid4().hex
        self._claim(kb, job_id)
        job = self.queue.enqueue_call(
            JOB_FUNCTION,
            args=(kb, paths, rebuild, self._prefix),
            job_id=job_id,
            timeout=self._timeout_s,
            result_ttl=self._keep_s,
            failure_ttl=self._keep_s,
            meta={"kb": kb, "progress": {"done": 0, "total": None, "current": None}},
            description=f"ingest into {kb}",
        )
        return view(job)

    def get(self, job_id: str) -> JobView:
        if not _JOB_ID.match(job_id):  # ours are uuid4 hex; RQ raises on odd characters
            raise JobNotFound(f"no ingest job {job_id[:64]!r}")
        try:
            job = Job.fetch(job_id, connection=self._redis)
        except NoSuchJobError as exc:
            raise JobNotFound(f"no ingest job {job_id!r} (finished jobs are kept a week)") from exc
        if job.func_name != JOB_FUNCTION:
            raise JobNotFound(f"no ingest job {job_id!r}")
        return view(job)

    def depth(self) -> int:
        """Jobs waiting to start."""
        return int(self.queue.count)

    def _claim(self, kb: str, job_id: str) -> None:
        key = claim_key(self._prefix, kb)
        ttl = self._timeout_s + 600
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    holder = raw.decode() if isinstance(raw, bytes) else raw
                    if holder is not None and _live(holder, self._redis):
                        raise KnowledgeBaseBusy(
                            f"an ingest of knowledge base {kb!r} is already queued or running "
                            f"(job {holder}); wait for it to finish"
                        )
                    pipe.multi()
                    pipe.set(key, job_id, ex=ttl)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue  # someone else claimed or released meanwhile: look again


def _live(job_id: str, connection: redis.Redis) -> bool:
    try:
        return Job.fetch(job_id, connection=connection).get_status() in LIVE
    except NoSuchJobError:
        return False


def view(job: Job) -> JobView:
    meta = job.meta or {}
    status = job.get_status(refresh=False)
    report = job.return_value() if status == JobStatus.FINISHED else None
    error = meta.get("error")
    if status == JobStatus.FAILED and error is None:  # killed, timed out, or a bug
        error = {"code": "job_failed", "message": "the ingest job stopped; see the worker log"}
    return JobView(
        job_id=job.id,
        kb=str(meta.get("kb", "")),
        state=str(status.value if status is not None else "unknown"),
        progress=dict(meta.get("progress") or {}),
        enqueued_at=_epoch(job.enqueued_at),
        started_at=_epoch(job.started_at),
        ended_at=_epoch(job.ended_at),
        report=report if isinstance(report, dict) else None,
        error=error,
        gate=meta.get("gate"),
    )


def _epoch(moment: Any) -> float | None:
    return moment.timestamp() if moment is not None else None
