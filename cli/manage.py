"""``citewise kb ...`` and ``citewise docs ...``: list, show and delete knowledge bases and
documents from a terminal (the same operations as ``/v1/kbs`` over HTTP, ``ingest.management``).

Printed text comes from documents, so it is escaped: "[note]" in a title is not Rich markup.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from citewise.errors import CitewiseError, InvalidRequest
from citewise.settings import Settings
from cli.console import JsonOption, KbOption, fail, stderr, stdout

kb_app = typer.Typer(no_args_is_help=True, help="Knowledge bases: list them, delete one.")
docs_app = typer.Typer(
    no_args_is_help=True, help="Documents of a knowledge base: list, show, delete."
)


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


# --- knowledge bases ---------------------------------------------------------------------


@kb_app.command("list")
def kb_list(as_json: JsonOption = False) -> None:
    """Every knowledge base: sources, documents, chunks, model, corpus version, last ingest."""
    from ingest.management import open_management

    try:
        with open_management(Settings()) as management:
            found = management.knowledge_bases()
    except CitewiseError as error:
        fail(error, as_json)
    if as_json:
        _emit({"knowledge_bases": found})
        return
    if not found:
        stdout.print("no knowledge bases yet: citewise ingest PATH --kb NAME")
        return
    table = Table(title="Knowledge bases", title_justify="left")
    for column in ("name", "sources", "documents", "chunks", "model", "corpus", "last ingest"):
        table.add_column(column, justify="right" if column in ("documents", "chunks") else "left")
    for kb in found:
        name = kb["name"] + ("" if kb["status"] == "ready" else f" ({kb['status']})")
        sources = "\n".join(f"{s['name']}: {s['root']}" for s in kb["sources"]) or "-"
        table.add_row(
            escape(name),
            escape(sources),
            str(kb["documents"]),
            str(kb["chunks"]),
            escape(kb["embedding_model"] or "-"),
            kb["corpus_version"] or "-",
            _when(kb["last_ingest_at"]),
        )
    stdout.print(table)


@kb_app.command("delete")
def kb_delete(
    name: Annotated[str, typer.Argument(help="The knowledge base to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete a knowledge base: its chunks, BM25 index, manifest rows, uploads and cached
    answers (never the folders it was ingested from). Run it again to finish a delete that
    was interrupted."""
    from ingest.management import open_management

    if not yes and not as_json and sys.stdin.isatty():
        typer.confirm(f"Delete knowledge base {name!r} and everything stored for it?", abort=True)
    try:
        with open_management(Settings(), deleting=True) as management:
            done = management.delete_knowledge_base(name)
    except CitewiseError as error:
        fail(error, as_json)
    if as_json:
        _emit(done)
        return
    stdout.print(
        f"deleted knowledge base {escape(name)!r}: {done['documents']} documents, "
        f"{done['chunks']} chunks"
    )
    if done["answer_cache"] == "unreachable":
        stderr.print("warning: Redis was unavailable, cached answers were not flushed")


# --- documents ---------------------------------------------------------------------------


@docs_app.command("list")
def docs_list(
    kb: KbOption = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Only this source (its name).")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Only documents whose path starts so.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The documents of a knowledge base, by path: id, source, title, chunks, size, status."""
    from ingest.management import open_management

    settings = Settings()
    kb = kb or settings.core.default_kb
    try:
        with open_management(settings) as management:
            page = management.documents(kb, source=source, prefix=prefix)
    except CitewiseError as error:
        fail(error, as_json)
    if as_json:
        _emit({"kb": kb, "documents": page.documents})
        return
    if not page.documents:
        stdout.print(f"no documents in {kb!r}" + (" match" if source or prefix else ""))
        return
    table = Table(title=f"Documents of {kb!r}", title_justify="left")
    for column in ("id", "path", "title", "chunks", "bytes", "status", "ingested"):
        table.add_column(column, justify="right" if column in ("chunks", "bytes") else "left")
    for document in page.documents:
        status = document["status"]
        if document["error"]:
            status += f": {document['error']}"
        table.add_row(
            document["id"],
            escape(document["path"]),
            escape(document["title"] or "-"),
            str(document["chunks"]),
            "-" if document["bytes"] is None else str(document["bytes"]),
            escape(status),
            _when(document["ingested_at"]),
        )
    stdout.print(table)


@docs_app.command("show")
def docs_show(
    doc_id: Annotated[str, typer.Argument(metavar="ID", help="The document's id (docs list).")],
    kb: KbOption = None,
    as_json: JsonOption = False,
) -> None:
    """One document's record and its chunks in order, text included."""
    from ingest.management import open_management

    settings = Settings()
    try:
        with open_management(settings) as management:
            shown = management.document(kb or settings.core.default_kb, doc_id)
    except CitewiseError as error:
        fail(error, as_json)
    if as_json:
        _emit(shown)
        return
    document = shown["document"]
    for label in ("id", "path", "source", "title", "status", "error", "chunks", "bytes"):
        if document[label] is not None:
            stdout.print(f"[bold]{label}:[/] {escape(str(document[label]))}")
    stdout.print(f"[bold]content hash:[/] {document['content_hash'] or '-'}")
    stdout.print(f"[bold]ingested:[/] {_when(document['ingested_at'])}")
    for chunk in shown["chunks"]:
        heading = str(chunk["metadata"].get("heading") or "")
        stdout.print(f"\n[bold]#{chunk['chunk_index']}[/] [dim]{escape(heading)}[/]")
        stdout.print(escape(chunk["text"]))


@docs_app.command("delete")
def docs_delete(
    doc_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="The document's id (docs list).")
    ] = None,
    path: Annotated[
        str | None, typer.Option("--path", help="The document's path, as docs list shows it.")
    ] = None,
    kb: KbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete one document from the knowledge base (not its file: a later ingest of its folder
    adds it again while the file is there). Run it again to finish an interrupted delete."""
    from ingest.management import open_management

    settings = Settings()
    try:
        if (doc_id is None) == (path is None):
            raise InvalidRequest("name the document by its ID or by --path (one of them)")
        with open_management(settings, deleting=True) as management:
            done = management.delete_document(
                kb or settings.core.default_kb, doc_id=doc_id, path=path
            )
    except CitewiseError as error:
        fail(error, as_json)
    if as_json:
        _emit(done)
        return
    stdout.print(
        f"deleted {escape(done['deleted']['path'])} from {done['kb']!r}: "
        f"{done['chunks_deleted']} chunks; corpus version now {done['corpus_version'] or '-'}"
    )
