"""Each file is parsed in a process that is stopped when it runs over its time or memory budget:
the file is reported as failed with the setting to change, and the rest of the run goes on."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from citewise.settings import Settings
from citewise.wiring import build_store
from ingest.discovery import discover
from ingest.parallel import ChunkingConfig, ParseBudget, parse_all
from ingest.report import IngestReport
from tests.conftest import SAMPLE

Ingest = Callable[..., IngestReport]

PARAGRAPH = "A long manual keeps its readers busy, and its parser busier still. " * 5


def slow_markdown(path: Path, sections: int = 20_000) -> None:
    """Valid Markdown (7 MB) that passes every guard and keeps the parser busy for ten times the
    test's budget and more (about 16 s on a quiet machine of two cores)."""
    body = "\n\n".join(f"## Part {n}\n\n{PARAGRAPH}" for n in range(sections))
    path.write_text(f"# A very long manual\n\n{body}\n", encoding="utf-8")


def corpus_with(tmp_path: Path, make_slow: bool = True) -> tuple[Path, set[str]]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = set()
    for name in ("bank-sync.md", "refund-policy.pdf", "admin-handbook.docx"):
        shutil.copy(next(SAMPLE.rglob(name)), corpus / name)
        good.add(name)
    if make_slow:
        slow_markdown(corpus / "long-manual.md")
    return corpus, good


def test_a_file_over_the_time_budget_fails_alone_and_the_run_goes_on(
    ingest: Ingest, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    corpus, good = corpus_with(tmp_path)

    report = ingest(corpus, parse_timeout_s=1.5)

    assert [(f.path, f.error) for f in report.failures] == [
        ("long-manual.md", "still parsing after 1.5 s, stopped (CITEWISE_PARSE_TIMEOUT_S)")
    ]
    assert set(report.added) == good  # parsed by the worker started in the stopped one's place
    stored = build_store(make_settings()).knowledge_base("default")
    assert not stored.chunks_of_source("long-manual.md")


def test_a_file_over_the_memory_budget_is_stopped_and_reported(
    ingest: Ingest, tmp_path: Path
) -> None:
    corpus, _ = corpus_with(tmp_path, make_slow=False)

    # 64 MB is less than a parse process holds once the parsers are loaded: each file is over.
    report = ingest(corpus, parse_memory_mb=64)

    assert report.files_added == 0
    assert {f.error for f in report.failures} == {
        "parsing took more than 64 MB of memory, stopped (CITEWISE_PARSE_MEMORY_MB)"
    }
    assert len(report.failures) == 3


def chunking_of(settings: Settings) -> ChunkingConfig:
    chunking = settings.chunking
    return ChunkingConfig(
        chunking.tokens, chunking.overlap, chunking.encoding, settings.core.cache_dir
    )


def test_results_come_back_in_order_from_several_workers(
    make_settings: Callable[..., Settings],
) -> None:
    files, config = discover([SAMPLE]).files, chunking_of(make_settings())

    parsed = list(parse_all(files, config, workers=2, budget=ParseBudget()))

    assert [p.file.source for p in parsed] == [f.source for f in files]
    assert all(p.error is None and p.chunks for p in parsed)
    assert all(
        p.file_hash and p.size == f.path.stat().st_size for p, f in zip(parsed, files, strict=True)
    )


def test_a_consumer_that_stops_early_leaves_no_worker_busy(
    make_settings: Callable[..., Settings],
) -> None:
    files, config = discover([SAMPLE]).files, chunking_of(make_settings())
    results = parse_all(files, config, workers=2)

    first = next(results)
    results.close()  # the other worker was mid-file: it is stopped, not handed back busy

    again = list(parse_all(files[:3], config, workers=2))
    assert first.file == files[0]
    assert [p.file for p in again] == files[:3] and all(p.chunks for p in again)
