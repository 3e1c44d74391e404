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
) -> None:
    """Run ingest jobs queued through POST /v1/kbs/{kb}/ingest (RQ, over the service's Redis)."""
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
        Worker([queue], connection=redis.sync).work(burst=burst, logging_level="INFO")
    finally:
        redis.close()
