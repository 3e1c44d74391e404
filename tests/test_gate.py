"""Eval-gated ingest (real model, real Chroma): promoted when the golden questions still find
their documents, and otherwise the live knowledge base is left exactly as it was."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from citewise.search.embeddings import LocalEmbeddings
from citewise.settings import Settings
from citewise.wiring import build_lexical, build_store
from ingest.gate import gated_ingest, golden_path, load_golden
from ingest.manifest import Manifest
from ingest.pipeline import IngestPipeline
from tests.conftest import SAMPLE

GOLDEN = [
    {"question": "How do I cancel my subscription?", "source": "managing-your-subscription.md"},
    {"question": "How much is the mileage allowance per km?", "source": "mileage-and-per-diem.md"},
    {"question": "How do I photograph a receipt?", "source": "capturing-receipts.md"},
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(SAMPLE / "billing" / "managing-your-subscription.md", folder)
    for name in ("mileage-and-per-diem.md", "capturing-receipts.md"):
        shutil.copy(SAMPLE / "expenses" / name, folder)
    return folder


@pytest.fixture
def pipeline(
    make_settings: Callable[..., Settings], embeddings: LocalEmbeddings, corpus: Path
) -> IngestPipeline:
    settings = make_settings()
    pipeline = IngestPipeline(settings, build_store(settings), embeddings)
    pipeline.run([corpus], "default")
    golden = golden_path(settings, "default")
    golden.parent.mkdir(parents=True)
    golden.write_text("".join(json.dumps(g) + "\n" for g in GOLDEN), encoding="utf-8")
    return pipeline


def live_state(pipeline: IngestPipeline) -> tuple[dict[str, str], str | None, dict[str, str]]:
    settings = pipeline.settings
    chunks = build_store(settings).knowledge_base("default").snapshot()
    bm25 = build_lexical(settings).current_generation("default")
    with Manifest.open(settings.manifest_path, "default", read_only=True) as manifest:
        files = {s: r.file_hash for s, r in manifest.records().items()}
    return chunks, bm25, files


def leftovers(pipeline: IngestPipeline) -> list[str]:
    store = build_store(pipeline.settings)
    with Manifest.open(pipeline.settings.manifest_path, "default.staging") as manifest:
        records = list(manifest.records())
    folder = pipeline.settings.lexical_path / "default.staging"
    return [*store.knowledge_bases(), *records, *([str(folder)] if folder.exists() else [])]


def test_an_ingest_that_keeps_the_golden_questions_answerable_is_promoted(
    pipeline: IngestPipeline, corpus: Path
) -> None:
    before = live_state(pipeline)
    (corpus / "gift-cards.md").write_text(
        "# Gift cards\n\nTallybird gift cards never expire and pay for any plan.\n",
        encoding="utf-8",
    )
    golden = load_golden(pipeline.settings, "default")
    assert golden is not None

    report, gate = gated_ingest(pipeline, [corpus], "default", golden)

    assert gate.passed and gate.found == 3 and gate.missed == []
    assert report.kb == "default" and report.files_added == 1 and report.files_unchanged == 3
    assert report.chunks_embedded == report.chunks_added  # only the new file was embedded
    after = live_state(pipeline)
    assert set(before[0]) < set(after[0])  # the new chunks are live, the old ones kept
    assert after[1] != before[1]  # a new corpus version: stale cached answers retire
    assert "gift-cards.md" in after[2]
    assert leftovers(pipeline) == ["default"]  # no staging collection, records or index


def test_an_ingest_that_loses_a_golden_document_is_not_promoted(
    pipeline: IngestPipeline, corpus: Path
) -> None:
    before = live_state(pipeline)
    (corpus / "mileage-and-per-diem.md").unlink()
    golden = load_golden(pipeline.settings, "default")
    assert golden is not None

    report, gate = gated_ingest(pipeline, [corpus], "default", golden)

    assert report.files_deleted == 1  # the staging copy did lose it...
    assert not gate.passed and gate.found == 2
    assert gate.missed[0]["source"] == "mileage-and-per-diem.md"
    assert live_state(pipeline) == before  # ...but the live knowledge base did not
    assert leftovers(pipeline) == ["default"]


def test_malformed_golden_questions_are_reported_with_their_line(
    pipeline: IngestPipeline,
) -> None:
    path = golden_path(pipeline.settings, "default")
    path.write_text(json.dumps(GOLDEN[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(Exception, match="line 2"):
        load_golden(pipeline.settings, "default")


def test_a_delete_cut_short_is_finished_before_the_live_state_is_copied(
    pipeline: IngestPipeline, corpus: Path
) -> None:
    # As a kill leaves it: tombstone written, collection dropped, manifest rows still there.
    with Manifest.open(pipeline.settings.manifest_path, "default") as manifest:
        manifest.begin_delete()
    pipeline.store.drop("default")
    golden = load_golden(pipeline.settings, "default")
    assert golden is not None

    report, gate = gated_ingest(pipeline, [corpus], "default", golden)

    assert gate.passed and report.files_added == 3 and report.files_unchanged == 0
    chunks, bm25, files = live_state(pipeline)
    assert set(files) == {p.name for p in corpus.iterdir()} and chunks and bm25
    with Manifest.open(pipeline.settings.manifest_path, "default", read_only=True) as manifest:
        assert not manifest.deleting()
