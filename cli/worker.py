"""``citewise worker``: runs the ingest jobs the API queues."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from citewise.settings import IngestSettings, Settings
from cli.console import fail


def worker_options(settings: IngestSettings) -> dict[str, Any]:
    """RQ notices a job whose worker died (and runs it again: CITEWISE_JOB_HANDOVERS) in the
    registry maintenance a worker runs between its waits for a job. An idle worker waits
    ``worker_ttl`` - 15 s at a time, so both follow CITEWISE_WORKER_CHECK_S (RQ's defaults,
    10 minutes and 405 s, would leave such a job waiting up to a quarter of an hour); a killed
    worker's registration then also expires 15 s after its next wait would have ended."""
    from cli.rq_worker import heartbeat_options

    every = settings.worker_check_s
    return {"maintenance_interval": every, "worker_ttl": every + 15, **heartbeat_options(every)}


def worker(
    burst: Annotated[
        bool, typer.Option("--burst", help="Run the jobs already queued, then exit.")
    ] = False,
    supervised_by: Annotated[
        int | None,
        typer.Option(
            "--supervised-by",
            hidden=True,  # citewise serve's embedded worker (api/embedded_worker.py)
            help="Process id of the citewise serve that runs this worker; it dies with it.",
        ),
    ] = None,
) -> None:
    """Run ingest jobs queued through POST /v1/kbs/{kb}/ingest (RQ, over the service's Redis).

    `citewise serve` runs one itself unless CITEWISE_WORKERS=external; run this beside it then,
    or beside API processes started with uvicorn."""
    from citewise.errors import QueueUnavailable
    from citewise.job_queue import JobQueue
    from citewise.redis_client import connect

    settings = Settings()
    redis = connect(settings.redis, settings.redis_path)
    if redis is None:
        fail(QueueUnavailable("the job queue needs Redis, which is switched off"), False)
    try:
        queue = JobQueue(redis, settings.ingest).queue
        options = worker_options(settings.ingest)
        if supervised_by is None:
            from cli.rq_worker import CitewiseWorker

            CitewiseWorker([queue], connection=redis.sync, **options).work(
                burst=burst, logging_level="INFO"
            )
        else:
            from citewise.logs import configure_logging
            from cli.supervised_worker import run_supervised

            configure_logging(
                settings.observability.log_format, settings.observability.log_level
            )  # the server's log
            run_supervised(queue, supervised_by, settings.observability.log_level, options)
    finally:
        redis.close()
