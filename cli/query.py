"""``citewise search`` and ``citewise ask``: the knowledge base from a terminal or a script.

Printed text comes from documents, so it is escaped: "[note]" in a passage is not Rich markup.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from citewise.errors import CitewiseError
from citewise.settings import Settings
from cli.console import FilterOption, JsonOption, KbOption, fail, stdout


def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    kb: KbOption = None,
    k: Annotated[int, typer.Option("-k", help="How many hits.")] = 5,
    mode: Annotated[
        str | None, typer.Option(help="dense, bm25 or hybrid (default: CITEWISE_RETRIEVAL_MODE).")
    ] = None,
    filters: FilterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Retrieve the passages that best match QUERY."""
    from citewise.answer.answerer import hit_record
    from citewise.wiring import build_services

    settings = Settings()
    kb = kb or settings.core.default_kb
    try:
        services = build_services(settings)
        try:
            checked = services.retriever.query(
                query, kb=kb, k=k, mode=mode, filters=_filters(filters)
            )
            hits = services.retriever.search(checked)
        finally:
            services.close()
    except CitewiseError as error:
        fail(error, as_json)
    base_url = settings.answering.kb_base_urls.get(kb, "")
    rows = [hit_record(rank, h, base_url) for rank, h in enumerate(hits, start=1)]
    if as_json:
        sys.stdout.write(json.dumps([row.model_dump(mode="json") for row in rows]) + "\n")
        return
    for row in rows:
        where = row.source + (f" p.{row.page}" if row.page else "")
        stdout.print(
            f"[bold]{row.rank}.[/] {row.similarity:.3f}  [cyan]{escape(where)}[/]  "
            f"[dim]{escape(row.heading or '')}[/]"
        )
        stdout.print("   " + escape(" ".join(row.text.split())[:300]))


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    kb: KbOption = None,
    k: Annotated[int | None, typer.Option("-k", help="Passages to answer from.")] = None,
    filters: FilterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer QUESTION from the knowledge base, with citations (JSON: the /v1/ask body).

    Served like ``POST /v1/ask``: through the answer cache the service uses, so a question the
    service answered comes back at once, and one asked here is cached for the service."""
    import asyncio

    from citewise.answer.answerer import Question
    from citewise.serving.ask_service import Asked
    from citewise.wiring import Services, build_services

    async def answer(services: Services, asked: Question) -> Asked:
        try:
            return await services.asking.ask(asked, converse=False)
        finally:
            await services.aclose()

    settings = Settings()
    asked = Question(question, kb or settings.core.default_kb, k=k, filters=_filters(filters))
    try:
        whole = asyncio.run(answer(build_services(settings), asked)).whole()
    except CitewiseError as error:
        fail(error, as_json)
    if as_json:
        sys.stdout.write(json.dumps(whole.model_dump(mode="json")) + "\n")
        return
    stdout.print(escape(whole.answer))
    if whole.citations:
        stdout.print()
    for citation in whole.citations:
        flag = "" if citation.supported else " [yellow](not supported by the passage)[/]"
        where = escape(citation.source + (f" p.{citation.page}" if citation.page else ""))
        heading = escape(citation.heading or "")
        stdout.print(f"[bold]\\[{citation.n}][/] [cyan]{where}[/] [dim]{heading}[/]{flag}")
        stdout.print(f"    \u201c{escape(citation.quote)}\u201d")


def _filters(raw: list[str] | None) -> dict[str, Any]:
    """``key=value`` options -> a filter mapping; numbers stay numbers."""
    parsed: dict[str, Any] = {}
    for item in raw or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"filter {item!r} is not KEY=VALUE", param_hint="--filter")
        parsed[key.strip()] = int(value) if value.isdigit() else value
    return parsed
