"""Sources and document identity: no document is replaced, duplicated or deleted by an ingest
of another folder, and every report names the documents it touched."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from citewise import stored_chunk
from citewise.settings import Settings
from citewise.wiring import build_store
from ingest.report import IngestReport

Ingest = Callable[..., IngestReport]


def write(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def page(title: str, body: str) -> str:
    return f"# {title}\n\n{body}\n"


def documents(settings: Settings, kb: str) -> Counter[str]:
    """How many distinct documents hold each source key (any count above one is a duplicate
    document under one key; two keys for one file is a duplicate document)."""
    store = build_store(settings)
    _, metadatas = store.knowledge_base(kb).ids_and_metadatas()
    return Counter(str(m[stored_chunk.SOURCE]) for m in metadatas)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def test_two_folders_with_the_same_relative_path_both_stay(
    ingest: Ingest, settings: Settings, tmp_path: Path
) -> None:
    first, second = tmp_path / "security", tmp_path / "other"
    write(first, "index.md", page("Security", "Tokens expire after one hour."))
    write(first, "oauth.md", page("OAuth", "Scopes limit what a token may do."))
    write(second, "index.md", page("Other", "The office opens at nine."))

    assert ingest(first, kb="t").files_added == 2
    report = ingest(second, kb="t")

    assert (report.files_added, report.files_changed, report.files_deleted) == (1, 0, 0)
    assert report.added == ["other/index.md"]  # the second source's documents carry its name
    keys = documents(settings, "t")
    assert set(keys) == {"index.md", "oauth.md", "other/index.md"}
    # Re-ingesting either folder changes nothing of the other.
    again = ingest(first, kb="t")
    assert (again.files_unchanged, again.files_deleted, again.chunks_deleted) == (2, 0, 0)


def test_one_file_of_an_ingested_folder_is_updated_in_place(
    ingest: Ingest, settings: Settings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    write(docs, "tutorial/cors.md", page("CORS", "Add the middleware to allow origins."))
    write(docs, "tutorial/intro.md", page("Intro", "Install the package first."))
    ingest(docs, kb="f")
    edited = write(docs, "tutorial/cors.md", page("CORS", "List the origins you trust."))

    report = ingest(edited, kb="f")

    assert (report.files_added, report.files_changed) == (0, 1)
    assert report.changed == ["tutorial/cors.md"]
    assert set(documents(settings, "f")) == {"tutorial/cors.md", "tutorial/intro.md"}
    # A subfolder of the source is the same source too.
    assert ingest(docs / "tutorial", kb="f").files_unchanged == 2


def test_deletions_stay_inside_the_folder_that_was_walked(
    ingest: Ingest, settings: Settings, tmp_path: Path
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write(first, "one.md", page("One", "The first folder's page."))
    write(second, "two.md", page("Two", "The second folder's page."))
    gone = write(second, "three.md", page("Three", "A page that will be removed."))
    ingest(first, kb="d")
    ingest(second, kb="d")
    gone.unlink()
    (first / "one.md").unlink()  # not walked below: must stay

    report = ingest(second, kb="d")

    assert report.deleted == ["b/three.md"]
    assert set(documents(settings, "d")) == {"one.md", "b/two.md"}


def test_a_file_never_replaces_another_sources_document(
    ingest: Ingest, settings: Settings, tmp_path: Path
) -> None:
    first, elsewhere = tmp_path / "first", tmp_path / "x"
    write(first, "guide.md", page("Guide", "The original guide."))
    ingest(first, kb="c")
    # A folder named like a top folder of the first source's documents gets another name.
    write(first, "x/page.md", page("Page", "Inside the first folder."))
    ingest(first, kb="c")
    write(elsewhere, "page.md", page("Other page", "From another folder called x."))

    report = ingest(elsewhere, kb="c")

    assert report.files_failed == 0 and report.added == ["x-2/page.md"]
    assert set(documents(settings, "c")) == {"guide.md", "x/page.md", "x-2/page.md"}


def test_a_home_made_before_sources_keeps_its_documents(
    ingest: Ingest, settings: Settings, tmp_path: Path
) -> None:
    first, second = tmp_path / "handbook", tmp_path / "faq"
    write(first, "refunds.md", page("Refunds", "Refunds take five days."))
    write(second, "refunds.md", page("FAQ refunds", "Ask support for a refund."))
    ingest(first, kb="old")
    with sqlite3.connect(settings.manifest_path) as db:  # as an older Citewise left it
        db.execute("DELETE FROM sources")

    unchanged = ingest(first, kb="old")
    added = ingest(second, kb="old")

    assert (unchanged.files_unchanged, unchanged.chunks_deleted) == (1, 0)
    assert added.added == ["faq/refunds.md"]
    assert set(documents(settings, "old")) == {"refunds.md", "faq/refunds.md"}


def test_a_document_with_no_text_is_skipped_with_its_reason(
    ingest: Ingest, settings: Settings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    write(
        docs, "newsletter.md", '# Newsletter\n\n<iframe src="https://example.com/form"></iframe>\n'
    )
    page_with_text = write(docs, "about.md", page("About", "We make invoices simple."))
    ingest(docs, kb="e")
    page_with_text.write_text("# About\n", encoding="utf-8")  # emptied later

    report = ingest(docs, kb="e")

    assert report.files_failed == 0
    assert set(report.skipped) == {"newsletter.md", "about.md"}
    assert "no text" in report.skip_reasons["about.md"]
    assert report.chunks_deleted >= 1  # its old text no longer answers
    assert "about.md" not in documents(settings, "e")


def test_reports_and_dry_runs_name_the_documents(ingest: Ingest, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, "a.md", page("A", "First page."))
    write(docs, "b.md", page("B", "Second page."))
    (docs / "notes.csv").write_text("x,y\n", encoding="utf-8")
    first = ingest(docs, kb="r")
    assert sorted(first.added) == ["a.md", "b.md"]
    assert first.skip_reasons == {"notes.csv": "not a supported type (.csv)"}
    write(docs, "a.md", page("A", "First page, edited."))
    (docs / "b.md").unlink()
    write(docs, "c.md", page("C", "Third page."))

    plan = ingest(docs, kb="r", dry_run=True)
    done = ingest(docs, kb="r")

    for report in (plan, done):
        assert (report.added, report.changed, report.deleted) == (["c.md"], ["a.md"], ["b.md"])
    assert done.to_json()["deleted"] == ["b.md"]
