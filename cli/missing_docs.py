"""``citewise report``: the questions the documents could not answer, or users disliked."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from citewise.errors import CacheUnavailable, CitewiseError
from citewise.settings import Settings
from cli.console import JsonOption, KbOption, fail, stdout


def report(
    kb: KbOption = None,
    since: Annotated[
        str, typer.Option(help="How far back: 7d, 12h, 30m, or a date such as 2026-11-01.")
    ] = "30d",
    limit: Annotated[int, typer.Option(min=1, help="Groups to show.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Unanswered, low-confidence and disliked questions, grouped by meaning, most frequent
    first: the documents to write next."""
    from citewise.knowledge_base import validate_kb
    from citewise.redis_client import connect
    from citewise.serving.missing_docs import group_outcomes, parse_since
    from citewise.serving.outcomes import OutcomeLog
    from citewise.wiring import build_embeddings, cached

    settings = Settings()
    try:
        chosen = validate_kb(kb) if kb is not None else None
        start = parse_since(since, time.time())
        redis = connect(settings.redis, settings.redis_path)
        if redis is None:
            raise CacheUnavailable("the outcome log is kept in Redis, which is switched off")
        try:
            outcomes = OutcomeLog(redis, settings.outcomes).read(kb=chosen, since=start)
            embeddings = cached(settings, build_embeddings(settings), redis)
            groups = group_outcomes(outcomes, embeddings)[:limit]
        finally:
            redis.close()
    except CitewiseError as error:
        fail(error, as_json)
    if as_json:
        body = {"kb": chosen, "since": start, "groups": [g.to_dict() for g in groups]}
        sys.stdout.write(json.dumps(body) + "\n")
        return
    if not groups:
        stdout.print(f"Nothing unanswered or disliked since {_when(start)}.")
        return
    table = Table(title=f"Questions to write documents for (since {_when(start)})")
    table.add_column("#", justify="right")
    table.add_column("question")
    table.add_column("times", justify="right")
    table.add_column("refused", justify="right")
    table.add_column("unsure", justify="right")
    table.add_column("disliked", justify="right")
    table.add_column("last asked")
    for n, group in enumerate(groups, 1):
        # Visitors wrote these: "[red]" in a question is text, not Rich markup. (Escape
        # sequences were removed when the outcomes were read: OutcomeLog, printable.)
        others = [v for v, _ in group.variants.most_common(3) if v != group.question]
        text = escape(group.question) + "".join(f"\n[dim]also: {escape(v)}[/]" for v in others)
        text += "".join(f"\n[italic]\u201c{escape(c)}\u201d[/]" for c in group.comments[:2])
        table.add_row(
            str(n),
            text,
            str(group.count),
            str(group.refused),
            str(group.low_confidence),
            str(group.disliked),
            _when(group.last_seen),
        )
    stdout.print(table)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")
