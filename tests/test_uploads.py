"""Upload names and sizes: a table of hostile names, and what each becomes (or why not)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from api.errors import status_of
from citewise.errors import InvalidRequest, UploadTooLarge
from ingest.discovery import discover
from ingest.uploads import MAX_NAME_BYTES, check_upload, safe_upload_name

SAFE = [
    ("notes.md", "notes.md"),
    ("REPORT.PDF", "REPORT.PDF"),
    ("a/b/../../c.md", "c.md"),
    ("/abs/path.md", "path.md"),
    ("C:\\Users\\ann\\My Documents\\plan.docx", "plan.docx"),
    ("..\\..\\guide.txt", "guide.txt"),
    ("....//....//x.html", "x.html"),
    ("notes\x00.md", "notes.md"),
    ("evil.exe\x00.md", "evil.exe.md"),  # NUL truncation tricks other code, not this
    ("tab\tand\nnewline\r.md", "tab and newline.md"),
    ("  spaced   out  .md  ", "spaced out.md"),
    ("..hidden-ish.md", "hidden-ish.md"),
    (".notes.md", "notes.md"),
    ("trailing dots...md", "trailing dots.md"),
    ('what?<is>:this|"*.txt', "what__is__this___.txt"),
    ("CON.txt", "CON_.txt"),
    ("lpt1.backup.md", "lpt1_.backup.md"),
    ("console.txt", "console.txt"),
    # Unicode: compatibility forms fold to ASCII (fullwidth solidus, two-dot leader), slash
    # lookalikes separate, bidi overrides and zero-width characters vanish.
    ("\uff0e\uff0e\uff0fetc\uff0fnotes.md", "notes.md"),
    ("\u2025\u2215secret\u2215plan.md", "plan.md"),
    ("dir\u2044file.md", "file.md"),
    ("invoice\u202efdp.md", "invoicefdp.md"),
    ("zero\u200bwidth.md", "zerowidth.md"),
    ("re\u0301sume\u0301.md", "résumé.md"),  # NFC: one code point per letter
    ("report.\uff4d\uff44", "report.md"),
    ("日本語のメモ.txt", "日本語のメモ.txt"),
]

REFUSED = [
    "",
    "   ",
    "../../etc/passwd",
    "..\\..\\win.ini",
    "/",
    "..",
    "dir/",
    "\x00.md",
    ".md",
    ".bashrc",
    "noextension",
    "archive.tar.gz",
    "script.md.exe",
    "page.html/",
    "\u202e\u200b.md",
]


@pytest.mark.parametrize(("given", "expected"), SAFE)
def test_safe_names(given: str, expected: str) -> None:
    safe = safe_upload_name(given)
    assert safe == expected
    assert safe_upload_name(safe) == safe  # idempotent: storing it again changes nothing


@pytest.mark.parametrize("given", REFUSED)
def test_unusable_names_are_refused(given: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        safe_upload_name(given)
    message = str(caught.value)
    assert "\x00" not in message and "\u202e" not in message and "\n" not in message


@pytest.mark.parametrize(("given", "_"), [*SAFE, ("x" * 300 + ".md", ""), ("é" * 300 + ".pdf", "")])
def test_every_safe_name_is_one_plain_component(given: str, _: str) -> None:
    safe = safe_upload_name(given)
    assert "/" not in safe and "\\" not in safe and safe not in {".", ".."}
    assert not safe.startswith((".", " ")) and not safe.endswith((".", " "))
    assert all(c.isprintable() for c in safe)
    assert len(safe.encode()) <= MAX_NAME_BYTES
    assert unicodedata.normalize("NFKC", safe) == safe


@pytest.mark.parametrize(("stem", "suffix"), [("x", ".md"), ("é", ".docx"), ("日", ".html")])
def test_long_names_are_cut_to_whole_characters_keeping_the_extension(
    stem: str, suffix: str
) -> None:
    safe = safe_upload_name(stem * 300 + suffix)
    assert safe.endswith(suffix) and set(safe.removesuffix(suffix)) == {stem}
    assert MAX_NAME_BYTES - 3 <= len(safe.encode()) <= MAX_NAME_BYTES


def test_safe_names_are_ingested_under_that_name(tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    for given, _ in SAFE:
        (folder / safe_upload_name(given)).write_text("# Title\n\nText.\n", encoding="utf-8")
    found = discover([folder])
    assert sorted(f.source for f in found.files) == sorted({safe for _, safe in SAFE})
    assert found.skipped == [] and found.refused == []


def test_check_upload_sizes() -> None:
    assert check_upload("../notes.md", 10, max_bytes=10) == "notes.md"
    with pytest.raises(UploadTooLarge, match="over the 1 MB limit") as caught:
        check_upload("notes.md", 2**20 + 1, max_bytes=2**20)
    assert status_of(caught.value) == 413
    for size in (0, -1):
        with pytest.raises(InvalidRequest, match="empty"):
            check_upload("notes.md", size, max_bytes=2**20)
    with pytest.raises(InvalidRequest, match="cannot be ingested"):
        check_upload("payload.exe", 10, max_bytes=2**20)
