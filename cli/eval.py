"""``citewise eval``: measure retrieval (BEIR) and answers (SQuAD, or questions about a
documentation folder) on labelled data."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from citewise.errors import CitewiseError, InvalidRequest
from citewise.settings import REDIS_OFF, Settings
from cli.console import Bar, JsonOption, fail, progress_bar, stdout

if TYPE_CHECKING:
    from citewise.shapes import Answer
    from ingest.pipeline import IngestPipeline
    from ingest.report import IngestReport

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, help="Score retrieval and answers on labelled data.")
EVAL_KB = "eval"

ExistingFile = Annotated[Path, typer.Option(exists=True, dir_okay=False, readable=True)]


@contextmanager
def _throwaway_home(settings: Settings) -> Iterator[Settings]:
    """``settings`` with the store in a temporary folder, removed afterwards.

    A configured Redis is used (its embedding cache makes re-runs skip embedding the corpus;
    answers are never taken from its cache); an embedded one would live and die with the
    throwaway home, so none is started.
    """
    home = Path(tempfile.mkdtemp(prefix="citewise-eval-"))
    try:
        redis_url = REDIS_OFF if settings.redis.url is None else settings.redis.url
        # No answer cache: a re-run after a change to the answerer must score new answers.
        yield settings.replace(home=home, redis_url=redis_url, answer_cache=False)
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
            # Retrieval is scored, no answer written: the answerer's units are not embedded.
            pipeline = IngestPipeline(
                throwaway.replace(ingest_answer_units=False), services.store, services.embeddings
            )
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
    squad: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, readable=True, help="A SQuAD v1.1 file."),
    ] = None,
    docs_qa: Annotated[
        Path | None,
        typer.Option(
            "--docs-qa",
            exists=True,
            dir_okay=False,
            readable=True,
            help="JSON lines of questions about the --docs folder, each with its gold pages and "
            "key phrase (docs/benchmarks.md describes the fields).",
        ),
    ] = None,
    docs: Annotated[
        Path | None,
        typer.Option(
            exists=True, file_okay=False, help="With --docs-qa: the documentation folder to ingest."
        ),
    ] = None,
    details: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="With --docs-qa: write each question's answer, sources and flags to this file "
            "(JSON lines), to study the misses.",
        ),
    ] = None,
    unanswerable: Annotated[
        bool,
        typer.Option(
            "--unanswerable",
            help="With --squad: ingest half of the articles and ask the other half's questions; "
            "report how often Citewise refuses.",
        ),
    ] = False,
    joined: Annotated[
        bool,
        typer.Option(
            "--joined",
            help="With --squad: ingest each article as one long document (its paragraphs "
            "joined) instead of one document per paragraph.",
        ),
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Ask at most this many questions.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Answer quality on a SQuAD set (--squad) or on questions about a documentation folder
    (--docs-qa FILE --docs DIR)."""
    try:
        if (squad is None) == (docs_qa is None):
            raise InvalidRequest("give either --squad FILE or --docs-qa FILE --docs DIR")
        if squad is not None:
            if docs is not None or details is not None:
                raise InvalidRequest("--docs and --details go with --docs-qa")
            scores = _squad_answers(squad, unanswerable, limit, joined=joined)
        else:
            assert docs_qa is not None
            if docs is None:
                raise InvalidRequest("--docs-qa needs --docs DIR, the folder it asks about")
            if unanswerable or joined:
                raise InvalidRequest("--unanswerable and --joined go with --squad")
            scores = _docs_answers(docs_qa, docs, details, limit)
    except CitewiseError as error:
        fail(error, as_json)
    if docs_qa is not None:
        _print_docs(scores, as_json)
    else:
        _print(scores, as_json, "Answers")


def _squad_answers(
    squad: Path, unanswerable: bool, limit: int | None, *, joined: bool = False
) -> dict[str, Any]:
    """retrieved_hit, cited_hit, answer_contains, refused and p50_ms on a SQuAD-format set."""
    from cli import evaluation

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
    settings = Settings()

    def load(pipeline: IngestPipeline, progress: Bar) -> None:
        if joined:
            articles = len({title for title, _, _ in paragraphs})
            pipeline.add_documents(
                EVAL_KB, evaluation.squad_articles(paragraphs), progress, articles
            )
        else:
            documents = evaluation.squad_documents(paragraphs)
            pipeline.add_documents(EVAL_KB, documents, progress, len(paragraphs))

    _, asked, failed = _ask_all(settings, load, [text for text, _ in questions])
    totals = {
        "retrieved_hit": 0,
        "cited_hit": 0,
        "answer_contains": 0,
        "refused": 0,
        "unsupported": 0,  # answers the support check flagged (a claim its passage lacks)
    }
    for (_, gold), (answer, _) in zip(questions, asked, strict=True):
        cited = {c.n for c in answer.citations}
        totals["retrieved_hit"] += any(
            evaluation.contains_answer(s.text, gold) for s in answer.sources if s.retrieved
        )
        totals["cited_hit"] += any(
            evaluation.contains_answer(s.text, gold) for s in answer.sources if s.n in cited
        )
        totals["answer_contains"] += evaluation.contains_answer(answer.answer, gold)
        totals["refused"] += answer.refused
        totals["unsupported"] += any(not c.supported for c in answer.citations)
    count = max(1, len(questions))
    scores: dict[str, Any] = {k: round(v / count, 4) for k, v in totals.items()}
    if unanswerable:
        scores = {"refused": scores["refused"]}
    scores["p50_ms"] = round(evaluation.percentile([ms for _, ms in asked], 0.5), 1)
    scores["questions"] = len(questions)
    scores["failed"] = failed
    scores["provider"] = settings.answering.provider
    scores["unanswerable"] = unanswerable
    scores["joined"] = joined
    return scores


def _docs_answers(
    path: Path, docs: Path, details: Path | None, limit: int | None
) -> dict[str, Any]:
    """Ingest the folder ``docs`` as a user would, ask the questions of ``path`` and score them
    (``cli.docs_qa``); each question's record goes to ``details`` when given."""
    from cli import docs_qa

    questions = docs_qa.read_docs_qa(path)[:limit]
    if missing := docs_qa.missing_pages(questions, docs):
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise InvalidRequest(f"gold pages not found under {docs}: {shown}")
    settings = Settings()

    def load(pipeline: IngestPipeline, progress: Bar) -> IngestReport:
        return pipeline.run([docs], EVAL_KB, progress=progress)

    report, asked, failed = _ask_all(settings, load, [q.question for q in questions])
    records = [
        docs_qa.judge(question, answer, ms)
        for question, (answer, ms) in zip(questions, asked, strict=True)
    ]
    if details is not None:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        details.write_text(lines, encoding="utf-8")
    scores = docs_qa.summarise(records)
    scores["failed"] = failed
    scores["pages"] = report.files_added
    scores["pages_failed"] = report.files_failed
    scores["provider"] = settings.answering.provider
    return scores


def _ask_all(
    settings: Settings, load: Callable[[IngestPipeline, Bar], T], questions: list[str]
) -> tuple[T, list[tuple[Answer, float]], int]:
    """Load a corpus into a throwaway knowledge base with ``load``, then ask every question
    through the answerer the API uses: what ``load`` returned, each answer with its latency in
    milliseconds, and how many answers failed.

    A question whose answer fails (the model's server down for a moment, a timeout) scores
    as an empty answer, is counted, and its error printed; the run goes on, so one bad request
    does not throw away an hour of answers."""
    from citewise.answer.answerer import Question
    from citewise.shapes import Answer
    from citewise.wiring import build_services
    from cli import evaluation
    from ingest.pipeline import IngestPipeline

    failed_answer = Answer(
        answer_id="",
        answer="",
        citations=[],
        sources=[],
        refused=False,
        cached=False,
        conversation_id=None,
    )
    asked: list[tuple[Answer, float]] = []
    failed = 0
    # One event loop for every question: LLM clients keep connections bound to their loop.
    with (
        _throwaway_home(settings) as throwaway,
        progress_bar() as progress,
        asyncio.Runner() as runner,
    ):
        services = build_services(throwaway)
        loaded = load(IngestPipeline(throwaway, services.store, services.embeddings), Bar(progress))
        bar = Bar(progress)
        bar.start(len(questions))
        for text in questions:
            started = time.perf_counter()
            checked = services.answerer.check(Question(text, EVAL_KB))
            try:
                answer = runner.run(services.answerer.ask(checked))
            except CitewiseError as error:
                failed += 1
                # Above the bar (both on stderr): stdout stays one JSON object with --json.
                progress.console.print(f"[yellow]answer failed[/] ({error.code}: {error}): {text}")
                answer = failed_answer
            asked.append((answer, evaluation.elapsed_ms(started)))
            bar.advance(text)
    return loaded, asked, failed


def _print(scores: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(scores) + "\n")
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in scores.items():
        table.add_row(key, "n/a" if value is None else str(value))
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


def _print_docs(scores: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(scores) + "\n")
        return
    _print({k: v for k, v in scores.items() if k != "by_kind"}, False, "Answers (docs QA)")
    flags = ["gold_page_retrieved", "gold_page_cited", "key_phrase_in_answer", "refused"]
    table = Table(title="By kind", title_justify="left")
    for column in ["kind", "questions", *flags]:
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, row in scores["by_kind"].items():
        cells = ["" if row.get(f) is None else f"{row[f]:.3f}" for f in flags]
        table.add_row(kind, str(row["questions"]), *cells)
    stdout.print(table)
