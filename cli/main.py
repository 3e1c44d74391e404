"""The ``citewise`` command: a thin face over the ingest pipeline, retrieval and the server.

Exit codes: 0 success; 1 a file failed or the run was refused (busy, model mismatch);
2 usage errors (bad arguments, missing paths, invalid knowledge base names, a setting that is
not allowed).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.markup import escape
from rich.table import Table

from citewise.errors import CitewiseError, InvalidRequest
from citewise.settings import Settings, explain
from cli.console import (
    Bar,
    JsonOption,
    KbOption,
    fail,
    progress_bar,
    stderr,
    stdout,
)
from cli.eval import app as eval_app
from cli.job import job
from cli.manage import docs_app, kb_app
from cli.mcp_stdio import mcp
from cli.missing_docs import report
from cli.query import ask, search
from cli.worker import worker

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(eval_app, name="eval")
app.add_typer(kb_app, name="kb")
app.add_typer(docs_app, name="docs")
app.command()(search)
app.command()(ask)
app.command()(report)
app.command()(worker)
app.command()(job)
app.command()(mcp)

LISTED = 20  # documents named under an ingest report in a terminal


@app.command()
def ingest(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH... | URL",
            help="Files or folders to ingest, or the URL of a website (a web source).",
        ),
    ],
    kb: KbOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; write nothing.")
    ] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Drop the knowledge base first.")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Keep running: re-ingest whenever files change (Ctrl-C stops)."
        ),
    ] = False,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Web source: only pages whose path matches this glob."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Web source: no page whose path matches this glob."),
    ] = None,
    max_pages: Annotated[
        int | None,
        typer.Option("--max-pages", min=1, help="Web source: fetch at most this many pages."),
    ] = None,
    crawl: Annotated[
        bool, typer.Option("--crawl", help="Web source: follow links; look for no sitemap.")
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option("--interval", min=1, help="Web source with --watch: seconds between checks."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Parse, chunk, embed and store documents; re-runs pay only for what changed."""
    from ingest.setup import open_pipeline
    from ingest.web.address import is_web
    from ingest.web.crawl import Site

    settings = Settings()
    kb = kb or settings.core.default_kb
    if watch and dry_run:
        fail(InvalidRequest("--watch and --dry-run do not go together"), as_json)
    urls = [t for t in targets if is_web(t)]
    web_options = include or exclude or max_pages is not None or crawl or interval is not None
    if urls and len(targets) > 1:
        fail(InvalidRequest("a web source is ingested on its own: give one URL"), as_json)
    if web_options and not urls:
        fail(InvalidRequest("--include, --exclude, --max-pages, --crawl and --interval "
                            "are for a web source (a URL)"), as_json)  # fmt: skip
    site = None
    if urls:
        site = Site(urls[0], tuple(include or ()), tuple(exclude or ()), max_pages, crawl)
    paths = [Path(t) for t in targets]
    try:
        with open_pipeline(settings, dry_run=dry_run) as pipeline:
            run = (
                partial(pipeline.run_web, site, kb)
                if site is not None
                else partial(pipeline.run, paths, kb)
            )
            with progress_bar() as progress:
                report = run(dry_run=dry_run, rebuild=rebuild, progress=Bar(progress))
            _show(report, as_json)
            if watch and site is not None:
                _poll(run, site.url, interval or settings.ingest.web_watch_interval_s, as_json)
            elif watch:
                _watch(pipeline, paths, kb, settings.ingest.watch_debounce_ms, as_json)
    except CitewiseError as error:
        fail(error, as_json)
    raise typer.Exit(1 if report.files_failed else 0)


def _poll(run: Callable[..., Any], url: str, every: float, as_json: bool) -> None:
    """A web source's --watch: ingest again every ``every`` seconds until Ctrl-C, printing a
    report when something changed or failed (a site cannot be watched for changes)."""
    stderr.print(f"checking {url} every {every:g} s (Ctrl-C stops)")
    try:
        while True:
            time.sleep(every)
            try:
                report = run()
            except CitewiseError as error:  # e.g. busy: say so, keep watching
                stderr.print(f"error: {error}")
                continue
            if report.changed_anything or report.files_failed:
                _show(report, as_json)
    except KeyboardInterrupt:
        pass


def _show(report: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
        sys.stdout.flush()
    else:
        _print_report(report)


def _watch(pipeline: Any, paths: list[Path], kb: str, debounce_ms: int, as_json: bool) -> None:
    """Re-ingest after each burst of changes: watchfiles waits for ``debounce_ms`` of quiet,
    so saving ten files (or an editor's write-rename dance) is one run, not ten."""
    import watchfiles

    def again(*, quiet_if_unchanged: bool) -> None:
        try:
            with progress_bar() as progress:
                report = pipeline.run(paths, kb, progress=Bar(progress))
        except CitewiseError as error:  # e.g. busy: say so, keep watching
            stderr.print(f"error: {error}")
            return
        if report.changed_anything or report.files_failed or not quiet_if_unchanged:
            _show(report, as_json)

    armed = False
    # The watcher only starts watching when first iterated, and yields nothing until a change:
    # yield_on_timeout makes it say when it is armed, so a change made between the first
    # ingest and that moment is caught by one catch-up run rather than missed.
    for changes in watchfiles.watch(
        *paths, debounce=debounce_ms, yield_on_timeout=True, rust_timeout=500,
        raise_interrupt=False,
    ):  # fmt: skip
        if not armed:
            armed = True
            again(quiet_if_unchanged=True)
            stderr.print(f"watching {', '.join(map(str, paths))} (Ctrl-C stops)")
        elif changes:
            again(quiet_if_unchanged=False)


def _print_report(report: Any) -> None:
    title = f"{'Plan (dry run)' if report.dry_run else 'Ingested'}: knowledge base {report.kb!r}"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    web = report.web or {}
    for label, value in [
        ("pages seen" if web else "files seen", report.files_seen),
        ("added", report.files_added),
        ("changed", report.files_changed),
        ("unchanged", report.files_unchanged),
        ("deleted", report.files_deleted),
        ("skipped", report.files_skipped),
        ("failed", report.files_failed),
        ("chunks added", report.chunks_added),
        ("chunks deleted", report.chunks_deleted),
        ("chunks unchanged", report.chunks_unchanged),
        ("chunks embedded", report.chunks_embedded),
        ("chunks reusing a stored vector", report.chunks_reused),
        ("chunks from the embedding cache", report.embed_cache_hits),
        ("answer units embedded", report.answer_units_embedded),
        *(
            [
                ("pages found in", "the sitemap" if web["mode"] == "sitemap" else "links"),
                ("requests", web["requests"]),
                ("answered 304 Not Modified", web["not_modified"]),
                ("unchanged by sitemap lastmod", web["unchanged_by_lastmod"]),
                ("missing, kept for now", len(web["missing"])),
            ]
            if web
            else []
        ),
        ("seconds", f"{report.seconds:.2f}"),
    ]:  # fmt: skip
        table.add_row(label, str(value))
    stdout.print(table)
    lines = [
        *(("[green]added[/]", path) for path in report.added),
        *(("[yellow]changed[/]", path) for path in report.changed),
        *(("[magenta]deleted[/]", path) for path in report.deleted),
        *(("[dim]skipped[/]", f"{p}: {report.skip_reasons.get(p, '')}") for p in report.skipped),
        *(("[red]failed[/]", f"{f.path}: {f.error}") for f in report.failures),
        *(
            ("[cyan]missing[/]", f"{url}: not found {n} time(s) running (CITEWISE_WEB_MISSES)")
            for url, n in web.get("missing", {}).items()
        ),
    ]
    # Documents are named, a screenful at most; --json lists every one.
    for label, text in lines[:LISTED]:
        stdout.print(f"{label} {escape(text)}")
    if len(lines) > LISTED:
        stdout.print(f"[dim]... and {len(lines) - LISTED} more (--json lists them all)[/]")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Also serve a demo host page with the help widget on PORT+1 (another origin).",
        ),
    ] = False,
    demo_documents: Annotated[
        Path, typer.Option(help="Folder the demo page publishes under /kb/ for citation links.")
    ] = Path("data/sample"),
) -> None:
    """Run the HTTP service, and an ingest worker beside it (unless CITEWISE_WORKERS=external).

    The worker is a child process running `citewise worker`, restarted if it dies and stopped
    with the server; with CITEWISE_REDIS_URL=off there is no queue and none is started."""
    import os
    import threading

    import uvicorn

    from api.main import create_app

    settings = Settings()
    if demo:
        from api.demo import DEMO_WIDGET, demo_app
        from citewise.settings import WidgetSpec

        page = f"http://{host}:{port + 1}"
        origins = [page] + ([f"http://localhost:{port + 1}"] if host == "127.0.0.1" else [])
        widgets = {DEMO_WIDGET: WidgetSpec(origins=origins), **settings.widget.registered}
        base_urls = {settings.core.default_kb: f"{page}/kb/", **settings.answering.kb_base_urls}
        settings = settings.replace(widgets=widgets, kb_base_urls=base_urls)
        pages = uvicorn.Server(
            uvicorn.Config(
                demo_app(f"http://{host}:{port}", demo_documents.resolve()),
                host=host,
                port=port + 1,
                log_config=None,  # the API's app configures logging for the whole process
                access_log=False,
                proxy_headers=False,
            )
        )
        # A thread: uvicorn handles signals in the main thread only, so Ctrl-C stops the API
        # there and the process (and this daemon thread) with it.
        threading.Thread(target=pages.run, daemon=True).start()
        stdout.print(f"Demo page with the help widget: [bold]{page}[/]")
    # log_config=None: uvicorn keeps its hands off the logging create_app set up (text lines on
    # a terminal, JSON otherwise); its access line is replaced by ours, which knows routes and
    # request ids.
    # The worker runs this very program (the same interpreter and settings), told whose it is.
    worker = [sys.executable, "-m", "cli.main", "worker", "--supervised-by", str(os.getpid())]
    # proxy_headers=False: uvicorn would believe X-Forwarded-For from 127.0.0.1; the app
    # believes it from CITEWISE_TRUSTED_PROXIES only (api/proxies.py).
    uvicorn.run(
        create_app(settings, worker_command=worker),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


def main() -> None:
    # Every command builds its settings first; a value that is not allowed is a usage error,
    # told in one line per variable rather than a traceback through typer and pydantic.
    try:
        app()
    except (ValidationError, SettingsError) as error:
        lines = explain(error)
        if lines is None:  # not the settings: a bug, whose traceback is wanted
            raise
        sys.stderr.write("".join(f"citewise: {line}\n" for line in lines))
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
