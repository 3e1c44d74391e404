"""``citewise job ID``: an ingest job's state and progress, as ``GET /v1/jobs/{id}`` shows it."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.markup import escape

from citewise.errors import CitewiseError, QueueUnavailable
from citewise.job_queue import JobQueue, JobView
from citewise.settings import Settings
from cli.console import JsonOption, fail, progress_bar, stdout

FOLLOW_EVERY_S = 0.5
ENDED = ("finished", "failed", "stopped", "canceled")


def job(
    job_id: Annotated[str, typer.Argument(help="The job id POST /v1/kbs/{kb}/ingest returned.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow it with a progress bar until it ends.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show a queued ingest: its state, files and shards done, and its report or error."""
    from citewise.redis_client import connect

    settings = Settings()
    redis = connect(settings.redis, settings.redis_path, start_embedded=False)
    if redis is None:
        fail(QueueUnavailable("ingest jobs need Redis, which is switched off"), as_json)
    try:
        jobs = JobQueue(redis, settings.ingest)
        state = _follow(jobs, job_id) if wait else jobs.get(job_id)
    except CitewiseError as error:
        fail(error, as_json)
    finally:
        redis.close()
    if as_json:
        sys.stdout.write(json.dumps(asdict(state)) + "\n")
    else:
        _show(state)
    if state.state == "failed":
        raise typer.Exit(1)


def _follow(jobs: JobQueue, job_id: str) -> JobView:
    """Look at the job every half second until it ends (the bar is drawn on a terminal)."""
    with progress_bar() as bar:
        task = bar.add_task("queued", total=None)
        while True:
            state = jobs.get(job_id)
            progress = state.progress
            description = _line(state.state, progress)
            done, total = progress.get("done") or 0, progress.get("total")
            bar.update(task, total=total, completed=done, description=description)
            if state.state in ENDED:
                return state
            time.sleep(FOLLOW_EVERY_S)  # the job runs in a worker elsewhere: look again


def _line(state: str, progress: dict[str, Any]) -> str:
    shards = progress.get("shards_total")
    if shards:
        return f"{state}: shards {progress.get('shards_done', 0)}/{shards}"
    return state


def _show(state: JobView) -> None:
    progress = state.progress
    stdout.print(f"[bold]{state.job_id}[/]  {state.kb}  [cyan]{state.state}[/]")
    files = f"files {progress.get('done') or 0}/{progress.get('total') or '?'}"
    if progress.get("shards_total"):
        files += (
            f", shards {progress['shards_done']}/{progress['shards_total']}"
            f" ({progress.get('shards_retried', 0)} handed on after a worker stopped)"
        )
    if progress.get("handovers"):
        files += f"; run again {progress['handovers']}× after its worker died"
    stdout.print(files)
    if state.report is not None:
        r = state.report
        stdout.print(
            f"{r['files_added']} added, {r['files_changed']} changed, "
            f"{r['files_unchanged']} unchanged, {r['files_deleted']} deleted, "
            f"{r['files_failed']} failed; {r['chunks_embedded']} chunks embedded"
        )
    if state.error is not None:
        stdout.print(f"[bold red]error:[/] {escape(state.error['message'])}")
