"""The ``citewise`` command: a thin face over the ingest pipeline, retrieval and the server.

Exit codes: 0 success; 1 a file failed or the run was refused (busy, model mismatch);
2 usage errors (bad arguments, missing paths, invalid knowledge base names).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from citewise.errors import CitewiseError, InvalidRequest
from citewise.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
stdout = Console()
stderr = Console(stderr=True)

KbOption = Annotated[str | None, typer.Option("--kb", help="Knowledge base (default: default).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]


def _fail(error: CitewiseError, as_json: bool) -> NoReturn:
    code = 2 if isinstance(error, InvalidRequest) else 1
    if as_json:
        sys.stdout.write(json.dumps({"error": {"code": error.code, "message": str(error)}}) + "\n")
    else:
        stderr.print(f"[bold red]error:[/] {error}")
    raise typer.Exit(code)


class _Bar:
    """rich progress bar on stderr, drawn only on a terminal."""

    def __init__(self, progress: RichProgress) -> None:
        self._progress = progress
        self._task: Any = None

    def start(self, total: int) -> None:
        self._task = self._progress.add_task("parsing", total=total)

    def advance(self, description: str) -> None:
        self._progress.update(self._task, advance=1, description=description[-40:])


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    kb: KbOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; write nothing.")
    ] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Drop the knowledge base first.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Parse, chunk, embed and store documents; re-runs pay only for what changed."""
    from citewise.providers import build_embeddings, build_store
    from ingest.pipeline import IngestPipeline

    settings = Settings()
    kb = kb or settings.default_kb
    columns = (
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with RichProgress(
            *columns, console=stderr, transient=True, disable=not stderr.is_terminal
        ) as progress:
            pipeline = IngestPipeline(
                settings, build_store(settings, create=not dry_run), build_embeddings(settings)
            )
            report = pipeline.run(
                paths, kb, dry_run=dry_run, rebuild=rebuild, progress=_Bar(progress)
            )
    except CitewiseError as error:
        _fail(error, as_json)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
    else:
        _print_report(report)
    raise typer.Exit(1 if report.files_failed else 0)


def _print_report(report: Any) -> None:
    title = f"{'Plan (dry run)' if report.dry_run else 'Ingested'}: knowledge base {report.kb!r}"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in [
        ("files seen", report.files_seen),
        ("added", report.files_added),
        ("changed", report.files_changed),
        ("unchanged", report.files_unchanged),
        ("deleted", report.files_deleted),
        ("skipped (unsupported type)", report.files_skipped),
        ("failed", report.files_failed),
        ("chunks added", report.chunks_added),
        ("chunks deleted", report.chunks_deleted),
        ("chunks unchanged", report.chunks_unchanged),
        ("chunks embedded", report.chunks_embedded),
        ("chunks reusing a stored vector", report.chunks_reused),
        ("seconds", f"{report.seconds:.2f}"),
    ]:
        table.add_row(label, str(value))
    stdout.print(table)
    for skipped in report.skipped:
        stdout.print(f"[dim]skipped[/] {skipped}")
    for failure in report.failures:
        stdout.print(f"[red]failed[/] {failure.path}: {failure.error}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    kb: KbOption = None,
    k: Annotated[int, typer.Option("-k", help="How many hits.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Retrieve the chunks closest to QUERY (dense retrieval)."""
    from citewise.providers import build_embeddings, build_store
    from citewise.retrieval import dense_search

    settings = Settings()
    try:
        hits = dense_search(
            build_store(settings, create=False),
            build_embeddings(settings),
            kb or settings.default_kb,
            query,
            k,
        )
    except CitewiseError as error:
        _fail(error, as_json)
    rows = [
        {
            "rank": rank,
            "chunk_id": h.chunk_id,
            "source": h.metadata.get("source"),
            "title": h.metadata.get("title"),
            "heading": h.metadata.get("heading"),
            "page": h.metadata.get("page"),
            "score": round(h.score, 4),
            "text": h.text,
        }
        for rank, h in enumerate(hits, start=1)
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    for row in rows:
        where = str(row["source"]) + (f" p.{row['page']}" if row["page"] else "")
        stdout.print(
            f"[bold]{row['rank']}.[/] {row['score']:.3f}  [cyan]{where}[/]  "
            f"[dim]{row['heading']}[/]"
        )
        stdout.print("   " + " ".join(str(row["text"]).split())[:300])


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the HTTP service."""
    import uvicorn

    from api.main import create_app

    uvicorn.run(create_app(Settings()), host=host, port=port)


def main() -> None:
    app()
