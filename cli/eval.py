"""``citewise eval``: measure retrieval (BEIR) and answers (SQuAD) on labelled data."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from citewise.errors import CitewiseError
from citewise.settings import REDIS_OFF, Settings
from cli.console import Bar, JsonOption, fail, progress_bar, stdout

app = typer.Typer(no_args_is_help=True, help="Score retrieval and answers on labelled data.")
EVAL_KB = "eval"

ExistingFile = Annotated[Path, typer.Option(exists=True, dir_okay=False, readable=True)]


@contextmanager
def _throwaway_home(settings: Settings) -> Iterator[Settings]:
    """``settings`` with the store in a temporary folder, removed afterwards.

    A configured Redis is used (its embedding cache makes re-runs skip embedding the corpus);
    an embedded one would live and die with the throwaway home, so none is started.
    """
    home = Path(tempfile.mkdtemp(prefix="citewise-eval-"))
    try:
        redis_url = REDIS_OFF if settings.redis.url is None else settings.redis.url
        yield settings.replace(home=home, redis_url=redis_url)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@app.command()
def retrieval(
    corpus: ExistingFile,
    queries: ExistingFile,
    qrels: ExistingFile,
    modes: Annotated[
        list[str] | None,
        typer.Option(
            "--mode",
            help="dense, bm25 or hybrid (default: CITEWISE_RETRIEVAL_MODE). Repeat to score "
            "several modes on one ingest; the JSON is then keyed by mode.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """nDCG@10, recall@10, MRR@10 and recall@100 on a BEIR-format set."""
    from citewise.wiring import build_services
    from cli import evaluation
    from ingest.pipeline import IngestPipeline

    started = time.perf_counter()
    settings = Settings()
    try:
        with _throwaway_home(settings) as throwaway, progress_bar() as progress:
            services = build_services(throwaway)
            pipeline = IngestPipeline(throwaway, services.store, services.embeddings)
            evaluation.ingest_beir(pipeline, EVAL_KB, corpus, Bar(progress))
            by_mode: dict[str, dict[str, Any]] = {}
            for mode in modes or [settings.retrieval.mode]:
                by_mode[mode] = evaluation.score_retrieval(
                    services.retriever,
                    EVAL_KB,
                    list(evaluation.read_jsonl(queries)),
                    evaluation.read_qrels(qrels),
                    mode,
                    Bar(progress),
                )
                by_mode[mode]["mode"] = mode
    except CitewiseError as error:
        fail(error, as_json)
    seconds = round(time.perf_counter() - started, 1)
    if len(by_mode) == 1:
        (scores,) = by_mode.values()
        _print({**scores, "seconds": seconds}, as_json, "Retrieval")
    else:
        _print_modes(by_mode, as_json, seconds)


@app.command()
def answers(
    squad: ExistingFile,
    unanswerable: Annotated[
        bool,
        typer.Option(
            "--unanswerable",
            help="Ingest half of the articles and ask the other half's questions: "
            "report how often Citewise refuses.",
        ),
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Ask at most this many questions.")] = None,
    as_json: JsonOption = False,
) -> None:
    """retrieved_hit, cited_hit, answer_contains, refused and p50_ms on a SQuAD-format set."""
    from citewise.answer.answerer import Question
    from citewise.wiring import build_services
    from cli import evaluation
    from ingest.pipeline import IngestPipeline

    paragraphs = evaluation.squad_paragraphs(squad)
    asked_paragraphs = paragraphs
    if unanswerable:
        titles = list(dict.fromkeys(title for title, _, _ in paragraphs))
        kept = set(titles[: len(titles) // 2])
        asked_paragraphs = [p for p in paragraphs if p[0] not in kept]
        paragraphs = [p for p in paragraphs if p[0] in kept]
    questions = [
        (str(q["question"]), [str(a["text"]) for a in q.get("answers", [])])
        for _, _, qas in asked_paragraphs
        for q in qas
    ][:limit]
    totals = {"retrieved_hit": 0, "cited_hit": 0, "answer_contains": 0, "refused": 0}
    latencies: list[float] = []
    settings = Settings()
    try:
        # One event loop for every question: LLM clients keep connections bound to their loop.
        with (
            _throwaway_home(settings) as throwaway,
            progress_bar() as progress,
            asyncio.Runner() as runner,
        ):
            services = build_services(throwaway)
            pipeline = IngestPipeline(throwaway, services.store, services.embeddings)
            pipeline.add_documents(
                EVAL_KB, evaluation.squad_documents(paragraphs), Bar(progress), len(paragraphs)
            )
            bar = Bar(progress)
            bar.start(len(questions))
            for text, gold in questions:
                started = time.perf_counter()
                checked = services.answerer.check(Question(text, EVAL_KB))
                answer = runner.run(services.answerer.ask(checked))
                latencies.append(evaluation.elapsed_ms(started))
                cited = {c.n for c in answer.citations}
                passages = [s.text for s in answer.sources]
                totals["retrieved_hit"] += any(
                    evaluation.contains_answer(p, gold) for p in passages
                )
                totals["cited_hit"] += any(
                    evaluation.contains_answer(s.text, gold) for s in answer.sources if s.n in cited
                )
                totals["answer_contains"] += evaluation.contains_answer(answer.answer, gold)
                totals["refused"] += answer.refused
                bar.advance(text)
    except CitewiseError as error:
        fail(error, as_json)
    count = max(1, len(questions))
    scores: dict[str, Any] = {k: round(v / count, 4) for k, v in totals.items()}
    if unanswerable:
        scores = {"refused": scores["refused"]}
    scores["p50_ms"] = round(evaluation.percentile(latencies, 0.5), 1)
    scores["questions"] = len(questions)
    scores["provider"] = settings.answering.provider
    scores["unanswerable"] = unanswerable
    _print(scores, as_json, "Answers")


def _print(scores: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(scores) + "\n")
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in scores.items():
        table.add_row(key, str(value))
    stdout.print(table)


def _print_modes(by_mode: dict[str, dict[str, Any]], as_json: bool, seconds: float) -> None:
    if as_json:
        sys.stdout.write(json.dumps({**by_mode, "seconds": seconds}) + "\n")
        return
    metrics = ["ndcg@10", "recall@10", "mrr@10", "recall@100"]
    table = Table(title=f"Retrieval ({seconds:.0f}s)", title_justify="left")
    for column in ["mode", *metrics, "queries"]:
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode, scores in by_mode.items():
        table.add_row(mode, *(f"{scores[m]:.4f}" for m in metrics), str(scores["queries"]))
    stdout.print(table)
