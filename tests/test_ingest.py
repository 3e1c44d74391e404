"""The incremental ingest pipeline, end to end on real files, model and Chroma."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import chromadb
import pytest
from filelock import FileLock

from citewise import stored_chunk
from citewise.errors import EmbeddingModelMismatch, KnowledgeBaseBusy
from citewise.search.store import ChunkStore, open_client
from citewise.settings import Settings
from citewise.wiring import build_store
from ingest.loaders import parse
from ingest.report import IngestReport
from tests.conftest import SAMPLE, snapshot

Ingest = Callable[..., IngestReport]


def test_first_ingest_parses_every_sample_document(
    ingest: Ingest, make_settings: Callable[..., Settings]
) -> None:
    report = ingest(SAMPLE)

    files = sorted(p for p in SAMPLE.rglob("*") if p.is_file())
    assert report.failures == []
    assert report.files_added == len(files) >= 20
    assert {p.suffix for p in files} >= {".md", ".txt", ".html", ".pdf", ".docx"}
    assert report.chunks_embedded == report.chunks_added > len(files)

    stored = build_store(make_settings()).knowledge_base("default")
    for path in files:
        source = path.relative_to(SAMPLE).as_posix()
        chunks = stored.chunks_of_source(source)
        assert chunks, f"{source} produced no chunks"
        pages = {m.get(stored_chunk.PAGE) for m in chunks.values()}
        assert (None not in pages) == (path.suffix == ".pdf"), source
        assert all(m[stored_chunk.TITLE] for m in chunks.values())
    assert report.chunks_added == stored.count()


def test_chunk_offsets_point_into_the_parsed_text(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    ingest(corpus)
    stored = build_store(make_settings()).knowledge_base("default")
    found = stored._collection.get(include=["documents", "metadatas"])
    texts = {p.name: parse(p).text() for p in corpus.iterdir()}
    for text, metadata in zip(found["documents"], found["metadatas"], strict=True):
        parsed = texts[metadata[stored_chunk.SOURCE]]
        assert parsed[metadata[stored_chunk.START] : metadata[stored_chunk.END]] == text


def test_noop_reingest_embeds_and_writes_nothing(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    first = ingest(corpus)
    before = snapshot(make_settings())

    again = ingest(corpus)

    assert again.files_unchanged == first.files_added
    assert again.chunks_embedded == again.chunks_added == again.chunks_deleted == 0
    assert again.chunks_unchanged == first.chunks_added
    assert snapshot(make_settings()) == before


def test_editing_one_file_embeds_only_its_new_chunks(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    ingest(corpus)
    before = snapshot(make_settings())
    edited = next(corpus.glob("*.md"))
    edited.write_text(
        "# A new opening section\n\nThis paragraph was added above everything else, so the "
        "offsets of every later chunk move.\n\n" + edited.read_text(encoding="utf-8"),
        encoding="utf-8",
    )

    report = ingest(corpus)

    after = snapshot(make_settings())
    new_ids = set(after) - set(before)
    assert report.files_changed == 1 and report.files_unchanged == len(list(corpus.iterdir())) - 1
    assert report.chunks_embedded == len(new_ids) == report.chunks_added >= 1
    # Chunks whose text did not change keep their ids (and vectors) despite shifted offsets.
    assert len(set(before) & set(after)) > len(new_ids)
    assert len(set(before) - set(after)) == report.chunks_deleted


def test_deleting_a_file_removes_all_its_chunks(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    ingest(corpus)
    victim = next(corpus.glob("*.html"))
    stored = build_store(make_settings()).knowledge_base("default")
    count = len(stored.chunks_of_source(victim.name))
    victim.unlink()

    report = ingest(corpus)

    assert report.files_deleted == 1 and report.chunks_deleted == count > 0
    assert stored.chunks_of_source(victim.name) == {}


def test_renaming_a_file_reuses_its_vectors(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    first = ingest(corpus)
    original = next(corpus.glob("*.txt"))
    original.rename(corpus / "renamed.txt")

    report = ingest(corpus)

    assert report.files_added == 1 and report.files_deleted == 1
    assert report.chunks_embedded == 0
    assert report.chunks_reused == report.chunks_added == report.chunks_deleted > 0
    stored = build_store(make_settings()).knowledge_base("default")
    assert stored.chunks_of_source(original.name) == {}
    assert stored.count() == first.chunks_added


def test_single_file_ingest_does_not_delete_its_siblings(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    first = ingest(corpus)
    report = ingest(next(corpus.glob("*.md")))
    assert report.files_unchanged == 1 and report.files_deleted == 0
    assert build_store(make_settings()).knowledge_base("default").count() == first.chunks_added


def test_hostile_files_are_reported_and_the_rest_is_ingested(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7\n this is not really a pdf \x00\x01")
    (corpus / "binary.md").write_bytes(bytes(range(256)) * 8)
    (corpus / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (corpus / "empty.md").write_bytes(b"")
    (corpus / "huge.txt").write_text("word " * 30_000, encoding="utf-8")
    (corpus / "archive.zip").write_bytes(b"PK\x03\x04")
    (corpus / "fake.docx").write_text("not a zip at all", encoding="utf-8")

    report = ingest(corpus, max_file_mb=0.1)

    failed = {f.path: f.error for f in report.failures}
    assert set(failed) == {
        "broken.pdf",
        "binary.md",
        "latin1.txt",
        "empty.md",
        "huge.txt",
        "fake.docx",
    }
    assert all(error and "\n" not in error for error in failed.values())
    assert "UTF-8" in failed["latin1.txt"] and "limit" in failed["huge.txt"]
    assert report.skipped == ["archive.zip"] and report.files_skipped == 1
    assert report.files_added == 5  # the five good documents
    assert build_store(make_settings()).knowledge_base("default").count() == report.chunks_added


def test_a_file_that_breaks_keeps_its_last_good_chunks(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    ingest(corpus)
    before = snapshot(make_settings())
    pdf = next(corpus.glob("*.pdf"))
    pdf.write_bytes(b"%PDF-1.4 truncated")

    report = ingest(corpus)

    assert [f.path for f in report.failures] == [pdf.name]
    assert snapshot(make_settings()) == before


def test_dry_run_on_a_fresh_home_writes_nothing(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    plan = ingest(corpus, dry_run=True)

    assert plan.dry_run and plan.files_added == 5 and plan.chunks_embedded == plan.chunks_added > 0
    assert not make_settings().core.home.exists()


def test_dry_run_plans_an_edit_without_applying_it(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    ingest(corpus)
    before = snapshot(make_settings())
    next(corpus.glob("*.txt")).unlink()
    with next(corpus.glob("*.md")).open("a", encoding="utf-8") as handle:
        handle.write("\n\nOne more paragraph at the very end of this document.\n")

    plan = ingest(corpus, dry_run=True)
    applied = ingest(corpus)

    assert snapshot(make_settings()) != before
    for field in (
        "files_changed",
        "files_deleted",
        "chunks_added",
        "chunks_deleted",
        "chunks_embedded",
        "chunks_unchanged",
    ):
        assert getattr(plan, field) == getattr(applied, field), field


def test_a_knowledge_base_built_with_another_model_is_refused(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    ingest(corpus)
    settings = make_settings()
    other = ChunkStore(open_client(settings.chroma, settings.chroma_path), "some-other-model", 768)

    with pytest.raises(EmbeddingModelMismatch, match="--rebuild"):
        other.knowledge_base("default")


def test_rebuild_replaces_a_knowledge_base_built_with_another_model(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    first = ingest(corpus)
    client = chromadb.PersistentClient(path=str(make_settings().chroma_path))
    client.get_collection("citewise-default").modify(
        metadata={"citewise_embedding_model": "older-model", "citewise_embedding_dim": 768}
    )
    with pytest.raises(EmbeddingModelMismatch):
        ingest(corpus)

    rebuilt = ingest(corpus, rebuild=True)

    assert rebuilt.chunks_added == first.chunks_added
    assert len(snapshot(make_settings())) == first.chunks_added


def test_knowledge_bases_are_independent(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    ingest(corpus, kb="alpha")
    next(corpus.glob("*.md")).unlink()
    beta = ingest(corpus, kb="beta")

    assert len(snapshot(make_settings(), "alpha")) > len(snapshot(make_settings(), "beta"))
    assert beta.files_added == 4


def test_a_second_ingest_of_the_same_knowledge_base_is_refused(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path
) -> None:
    settings = make_settings()
    settings.lock_dir.mkdir(parents=True)
    with (
        FileLock(str(settings.lock_dir / "default.lock")),
        pytest.raises(KnowledgeBaseBusy, match="another ingest"),
    ):
        ingest(corpus)
    assert ingest(corpus).files_added == 5  # the lock is free again


def test_changing_chunk_settings_rechunks_everything(ingest: Ingest, corpus: Path) -> None:
    ingest(corpus)
    report = ingest(corpus, chunk_tokens=120, chunk_overlap=20)
    assert report.files_changed == 5 and report.files_unchanged == 0
    assert report.chunks_added > 0


def test_a_file_turned_into_a_link_out_of_the_folder_is_refused_and_keeps_its_chunks(
    ingest: Ingest, make_settings: Callable[..., Settings], corpus: Path, tmp_path: Path
) -> None:
    ingest(corpus)
    before = snapshot(make_settings())
    outside = tmp_path / "outside.md"
    outside.write_text("# Private\n\nNot part of the corpus at all.\n", encoding="utf-8")
    markdown = next(corpus.glob("*.md"))
    markdown.unlink()
    markdown.symlink_to(outside)

    report = ingest(corpus)

    [failure] = report.failures
    assert failure.path == markdown.name and "outside the ingested folder" in failure.error
    assert report.files_deleted == 0 and snapshot(make_settings()) == before
