"""``citewise worker``: runs the ingest jobs the API queues."""

from __future__ import annotations

from typing import Annotated

import typer

from citewise.settings import Settings
from cli.console import fail


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
    from rq import Worker

    from citewise.errors import QueueUnavailable
    from citewise.job_queue import JobQueue
    from citewise.redis_client import connect

    settings = Settings()
    redis = connect(settings.redis, settings.redis_path)
    if redis is None:
        fail(QueueUnavailable("the job queue needs Redis, which is switched off"), False)
    try:
        queue = JobQueue(redis, settings.ingest).queue
        if supervised_by is None:
            Worker([queue], connection=redis.sync).work(burst=burst, logging_level="INFO")
        else:
            from citewise.logs import configure_logging
            from cli.supervised_worker import run_supervised

            configure_logging(
                settings.observability.log_format, settings.observability.log_level
            )  # the server's log
            run_supervised(queue, supervised_by, settings.observability.log_level)
    finally:
        redis.close()
