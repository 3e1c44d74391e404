"""The ingest job's body: what ``citewise worker`` runs for each job the API queued.

The queue itself (submitting, claiming a knowledge base, reading a job's state) is in
``citewise.job_queue``; it names this function by its import path, so the core never imports
the ingest face.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from rq import get_current_job
from rq.job import Job

from citewise.errors import CitewiseError, InvalidRequest, QualityGateFailed
from citewise.job_queue import (
    PROGRESS_EVERY_S,
    claim_key,
    claim_ttl,
    queue_helper,
    release_claim,
    renew_claim,
)
from citewise.job_shards import ShardBoard
from citewise.settings import Settings
from ingest.gate import gated_ingest, load_golden
from ingest.pipeline import IngestPipeline
from ingest.setup import open_pipeline
from ingest.sharding import Coordinator, help_out
from ingest.web.address import under_prefix
from ingest.web.crawl import Site

log = logging.getLogger("citewise.ingest.jobs")


class _JobProgress:
    """The pipeline's progress, written into the running job's meta (throttled)."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._done = 0
        self._total: int | None = None
        self._saved_at = 0.0

    def start(self, total: int) -> None:
        """A phase begins (a web source: fetching, then parsing), counted from 0."""
        self._done = 0
        self._total = total
        self._save(None, force=True)

    def advance(self, description: str) -> None:
        self._done += 1
        self._save(description, force=self._done == self._total)

    def _save(self, current: str | None, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._saved_at < PROGRESS_EVERY_S:
            return
        self._saved_at = now
        self._job.meta["progress"] = {"done": self._done, "total": self._total, "current": current}
        self._job.save_meta()  # type: ignore[no-untyped-call]


def run_ingest_job(
    kb: str, paths: list[str], rebuild: bool, prefix: str, web: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The job: runs in the worker's work horse, with the worker's settings. ``web``: ``paths``
    is the URL of a web source, with these options."""
    job = get_current_job()
    assert job is not None, "run_ingest_job runs inside an RQ worker"
    # This job is a process's entry point: the work horse RQ forks for it is handed only the
    # arguments the API queued, and settings (keys and secrets among them) must not travel
    # through Redis. So the job reads them here, once, from the worker's environment.
    settings = Settings()
    _count_run(job)
    if not renew_claim(job.connection, claim_key(prefix, kb), job.id, claim_ttl(settings.ingest)):
        log.warning("ingest job %s: another job holds knowledge base %r", job.id, kb)
    try:
        site = None if web is None else _allowed_site(paths[0], web, settings)
        with open_pipeline(settings) as pipeline:
            folders, progress = [Path(p) for p in paths], _JobProgress(job)
            confine = _ingest_root_holding(folders, settings.ingest.root)
            golden = load_golden(settings, kb)
            if golden is None and site is not None:
                return pipeline.run_web(site, kb, rebuild=rebuild, progress=progress).to_json()
            if golden is None:
                sharder = _coordinator(job, settings, pipeline, kb, prefix)
                run = pipeline.run(
                    folders,
                    kb,
                    rebuild=rebuild,
                    progress=progress,
                    confine=confine,
                    sharder=sharder,
                )
                return run.to_json()
            report, gate = gated_ingest(
                pipeline,
                folders,
                kb,
                golden,
                rebuild=rebuild,
                progress=progress,
                confine=confine,
                site=site,
            )
        job.meta["gate"] = gate.to_json()
        job.save_meta()  # type: ignore[no-untyped-call]
        if not gate.passed:
            raise QualityGateFailed(
                f"not promoted: {gate.found} of {gate.questions} golden questions found their "
                f"document (at least {gate.threshold:.0%} needed); {kb!r} is unchanged"
            )
        return report.to_json()
    except BaseException as error:
        # Only a job whose worker died is run again (JobQueue's handovers): one that failed
        # here would fail the same way. RQ reads this off the same Job object as it fails it.
        job.retries_left = 0
        if isinstance(error, CitewiseError):  # safe to show; anything else stays in the log
            job.meta["error"] = {"code": error.code, "message": str(error)}
            job.save_meta()  # type: ignore[no-untyped-call]
        raise
    finally:
        release_claim(job.connection, claim_key(prefix, kb), job.id)


def _count_run(job: Job) -> None:
    """Count this run in the job's meta (``handovers`` in its progress from the second on).
    A run after the first is a handover: the worker of the run before died mid-job, and this
    one starts over from what that one stored (a sharded ingest's board is published anew)."""
    runs = int(job.meta.get("runs") or 0) + 1
    job.meta["runs"] = runs
    job.save_meta()  # type: ignore[no-untyped-call]
    if runs > 1:
        log.warning(
            "ingest job %s: its worker died mid-job; running it again here (run %d), "
            "from what was stored",
            job.id,
            runs,
        )


def _allowed_site(url: str, web: dict[str, Any], settings: Settings) -> Site:
    """The web source a job names, if this worker's CITEWISE_WEB_ALLOWED_PREFIXES allow it:
    the API checked its own, but the worker's settings are the ones that fetch."""
    if not under_prefix(url, settings.ingest.web_allowed_prefixes):
        raise InvalidRequest("the URL is not under CITEWISE_WEB_ALLOWED_PREFIXES of the worker")
    return Site(
        url,
        tuple(web.get("include", ())),
        tuple(web.get("exclude", ())),
        web.get("max_pages"),
        bool(web.get("crawl", False)),
    )


def run_shard_helper(job_id: str, kb: str, prefix: str) -> dict[str, Any]:
    """A helper job: takes shards of job ``job_id``'s ingest while any wait."""
    job = get_current_job()
    assert job is not None, "run_shard_helper runs inside an RQ worker"
    settings = Settings()  # read here, as for the job itself
    board = ShardBoard(job.connection, prefix, job_id)
    helper = partial(queue_helper, job.connection, prefix, job_id, kb, settings.ingest)
    with open_pipeline(settings) as pipeline:
        done = help_out(pipeline, board, kb, settings.ingest, _token(job), helper)
    return {"shards": done}


def _coordinator(
    job: Job, settings: Settings, pipeline: IngestPipeline, kb: str, prefix: str
) -> Coordinator | None:
    """Shards need a store every worker writes to: a Chroma server (an embedded store is one
    process's files). Gated ingests build a staging copy and stay on one worker."""
    if not settings.chroma.server:
        return None
    board = ShardBoard(job.connection, prefix, job.id)
    helper = partial(queue_helper, job.connection, prefix, job.id, kb, settings.ingest)
    return Coordinator(pipeline, board, settings.ingest, _token(job), helper)


def _token(job: Job) -> str:
    """Who holds a lease: the RQ worker's name (as its registration shows it), the work
    horse's process id, and a nonce."""
    return f"{job.worker_name}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _ingest_root_holding(folders: list[Path], root: Path | None) -> Path | None:
    """The ingest root, when the job's paths were named under it: the API checked them, but
    they are read now, so every read stays beneath the root (``ingest.opening``) and a folder
    swapped for a link since then is refused. Uploads live elsewhere, under CITEWISE_HOME."""
    if root is None:
        return None
    base = root.resolve()
    return base if all(folder.is_relative_to(base) for folder in folders) else None
