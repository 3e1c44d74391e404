"""Terminal plumbing shared by the CLI commands: consoles, options, errors, progress bars."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from citewise.errors import CitewiseError, InvalidRequest

stdout = Console()
stderr = Console(stderr=True)

KbOption = Annotated[str | None, typer.Option("--kb", help="Knowledge base (default: default).")]
FilterOption = Annotated[
    list[str] | None,
    typer.Option("--filter", help="KEY=VALUE metadata match, or source_prefix=PATH; repeatable."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]


def fail(error: CitewiseError, as_json: bool) -> NoReturn:
    code = 2 if isinstance(error, InvalidRequest) else 1
    if as_json:
        sys.stdout.write(json.dumps({"error": {"code": error.code, "message": str(error)}}) + "\n")
    else:
        stderr.print(f"[bold red]error:[/] {error}")
    raise typer.Exit(code)


class Bar:
    """rich progress bar on stderr, drawn only on a terminal."""

    def __init__(self, progress: RichProgress) -> None:
        self._progress = progress
        self._task: Any = None

    def start(self, total: int) -> None:
        self._task = self._progress.add_task("parsing", total=total)

    def advance(self, description: str) -> None:
        self._progress.update(self._task, advance=1, description=description[-40:])


def progress_bar() -> RichProgress:
    """A transient bar on stderr, drawn only when stderr is a terminal."""
    return RichProgress(
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )
