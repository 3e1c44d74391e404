"""The RQ worker every ``citewise worker`` runs: RQ's, with a heartbeat that follows
CITEWISE_WORKER_CHECK_S.

RQ takes a running job for abandoned once its heartbeat has gone unrenewed for the interval at
which the worker beats plus a fixed 60 s, whatever the worker is told: a job whose worker died
waited at least 90 s for another worker to take it, and only the interval could be set. Here
both follow the setting; at its default (60 s) they are RQ's own, 30 s and 60 s.
"""

from __future__ import annotations

from typing import Any

from rq import Worker
from rq.job import Job


def heartbeat_options(check_s: int) -> dict[str, int]:
    """How often a busy worker beats, and how long a beat stays good after the next was due:
    a dead worker's job is free for another after about their sum (20 s when checking every
    second, 90 s at the default). The grace is never under 15 s: a worker on a loaded machine
    can beat late, and a job taken from a living worker would run twice."""
    return {
        "job_monitoring_interval": min(max(check_s, 5), 30),
        "heartbeat_grace": min(max(2 * check_s, 15), 60),
    }


class CitewiseWorker(Worker):
    def __init__(self, *args: Any, heartbeat_grace: int = 60, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_grace = heartbeat_grace

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        beat = float(self.job_monitoring_interval)
        if job.timeout and job.timeout > 0:  # as RQ: no beat is due after the job's timeout
            beat = min(job.timeout - working_time, beat)
        return int(beat) + self.heartbeat_grace
