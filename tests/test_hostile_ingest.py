"""A folder of hostile files, ingested by the real CLI in a child process: each is refused with a
one-line reason, the good documents are stored, memory stays bounded and nothing is written
outside CITEWISE_HOME."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from citewise import stored_chunk
from citewise.settings import Settings
from citewise.wiring import build_store
from tests.conftest import SAMPLE
from tests.hostile_files import (
    docx_bomb,
    list_after_unclosed_fence,
    nested_html,
    nested_list_markdown,
    pdf_shared_content,
)

PEAK_RSS_LIMIT = 1536 * 1024 * 1024  # model, Chroma, unstructured: ~1.2 GB for five good files
SECRET = "Aubergine-7731 is the vault code."  # only in a file outside the ingested folder
ODD_NAME = "Réunion; $(touch pwned) & 'quoted' <b>\u202eelif\tnew\nline.md"

# Runs the real `citewise ingest --json`, then reports the peak resident memory of the ingest
# and of its parse worker: kernel high-water marks, which sampling from outside could miss.
# The process's own is VmHWM, not getrusage: Linux carries ru_maxrss across exec, so that would
# report pytest's size at the fork. A reaped child's ru_maxrss is the worker's (at most the
# ingest's size when it started the worker, plus what parsing took).
RUN_INGEST = """
import resource, sys
from cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as stop:
    status = stop.code
with open("/proc/self/status") as proc:
    own = next(int(line.split()[1]) for line in proc if line.startswith("VmHWM:"))
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write(f"\\npeak_rss_kib={max(own, worker)}\\n")
sys.exit(status)
"""

# path -> what its failure message must say
EXPECTED = {
    "bomb.docx": "CITEWISE_MAX_UNCOMPRESSED_MB",
    "nested.html": "nested more than 256 levels",
    "nested-quotes.md": "nested more than 256 levels",
    "nested-list.md": "nested more than 256 levels",
    "fenced-list.md": "nested more than 256 levels",
    "brackets.md": "unclosed or deeply nested [ brackets",
    "shared-stream.pdf": "CITEWISE_MAX_COMPRESSION_RATIO",
    "huge.txt": "CITEWISE_MAX_FILE_MB",
    "random.md": "binary content",
    "random.txt": "binary content",
    "random.html": "binary content",
    "random.pdf": "",
    "random.docx": "not a valid Word file",
    "empty.md": "empty file",
    "latin1.txt": "not valid UTF-8",
    "pipe.md": "not a regular file",
    "escape.md": "outside the ingested folder",
    "absolute-escape.txt": "outside the ingested folder",
    "dangling.md": "broken symbolic link",
    "sub/caf\ufffd.md": "not valid UTF-8",
}


def tree(root: Path, skip: set[Path]) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root`` but the folders in ``skip``: (mode, size, mtime). lstat only:
    nothing is opened (a pipe would block) and no link is followed."""
    entries = {}
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if Path(directory, d) not in skip]
        for name in [*subdirs, *names]:
            info = os.lstat(os.path.join(directory, name))
            relative = os.path.relpath(os.path.join(directory, name), root)
            entries[relative] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return entries


def hostile_corpus(corpus: Path, outside: Path) -> set[str]:
    """The hostile files among good documents (one per format, one with an odd name), whose
    sources are returned."""
    corpus.mkdir()
    (corpus / "sub").mkdir()
    good = {f"sub/{ODD_NAME}"}
    shutil.copy(SAMPLE / "integrations" / "bank-sync.md", corpus / "sub" / ODD_NAME)
    for suffix in (".md", ".txt", ".html", ".pdf", ".docx"):
        first = sorted(SAMPLE.rglob(f"*{suffix}"))[0]
        shutil.copy(first, corpus / first.name)
        good.add(first.name)

    docx_bomb(corpus / "bomb.docx", next(SAMPLE.rglob("*.docx")), inflated_mib=2048)
    (corpus / "nested.html").write_text(nested_html(50_000), encoding="utf-8")
    (corpus / "nested-quotes.md").write_text(">" * 50_000 + " deep\n", encoding="utf-8")
    (corpus / "nested-list.md").write_text(nested_list_markdown(2_000), encoding="utf-8")
    (corpus / "fenced-list.md").write_text(list_after_unclosed_fence(1_500), encoding="utf-8")
    (corpus / "brackets.md").write_text("![" * 6_000, encoding="utf-8")  # 12 KB, 40 s to parse
    pdf_shared_content(corpus / "shared-stream.pdf", pages=2, content_bytes=2_000_000)  # 15 s
    with (corpus / "huge.txt").open("wb") as huge:  # sparse: 100 MB that costs no disk
        huge.truncate(100 * 1024 * 1024)
    noise = random.Random(6)
    for suffix in ("md", "txt", "html", "pdf", "docx"):
        (corpus / f"random.{suffix}").write_bytes(noise.randbytes(64 * 1024))
    (corpus / "empty.md").write_bytes(b"")
    (corpus / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e.".encode("latin-1"))
    os.mkfifo(corpus / "pipe.md")

    outside.mkdir()
    (outside / "secret.md").write_text(f"# Vault\n\n{SECRET}\n", encoding="utf-8")
    (corpus / "escape.md").symlink_to(Path("..") / outside.name / "secret.md")
    (corpus / "absolute-escape.txt").symlink_to(outside / "secret.md")
    (corpus / "dangling.md").symlink_to(corpus / "no-such-file.md")
    bad_name = os.path.join(os.fsencode(corpus / "sub"), b"caf\xe9.md")
    with open(bad_name, "wb") as handle:
        handle.write(b"# Caf\xc3\xa9\n\nA perfectly good document behind a bad name.\n")
    return good


@pytest.mark.timeout(300)
def test_hostile_files_are_refused_and_the_rest_is_ingested(
    tmp_path: Path, cache_dir: Path
) -> None:
    scratch = tmp_path / "scratch"
    corpus, outside, home = scratch / "corpus", scratch / "outside", scratch / "home"
    user_home, temp = scratch / "user-home", scratch / "tmp"
    for folder in (user_home, temp):
        folder.mkdir(parents=True)
    good = hostile_corpus(corpus, outside)
    with zipfile.ZipFile(corpus / "bomb.docx") as bomb:  # a real bomb: it does inflate
        assert bomb.getinfo("word/document.xml").file_size > 2_000_000_000
        with bomb.open("word/document.xml") as part:
            assert part.read(1024).startswith(b"<?xml")
    before = tree(scratch, skip={home, temp})

    env = {
        **os.environ,
        "CITEWISE_HOME": str(home),
        "CITEWISE_CACHE_DIR": str(cache_dir),
        "CITEWISE_REDIS_URL": "off",
        "HOME": str(user_home),
        "TMPDIR": str(temp),
    }
    run = subprocess.run(
        [sys.executable, "-c", RUN_INGEST, "ingest", str(corpus), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert run.returncode == 1, run.stderr[-3000:]  # 1: some files failed, the rest committed
    report: dict[str, Any] = json.loads(run.stdout)
    failures = {f["path"]: f["error"] for f in report["failures"]}
    assert set(failures) == set(EXPECTED), failures
    for path, error in failures.items():
        assert EXPECTED[path] in error, (path, error)
        assert error and "\n" not in error and str(scratch) not in error, (path, error)
    assert report["files_added"] == len(good)
    assert report["files_failed"] == len(EXPECTED)

    peak = int(run.stderr.rsplit("peak_rss_kib=", 1)[1]) * 1024
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"

    # Nothing written, moved or deleted outside CITEWISE_HOME; temporary files were removed.
    assert tree(scratch, skip={home, temp}) == before
    assert list(temp.iterdir()) == []
    settings = Settings(home=home, cache_dir=cache_dir)
    _, texts, metadatas = build_store(settings).knowledge_base("default").all_chunks()
    assert {m[stored_chunk.SOURCE] for m in metadatas} == good
    assert not any("Aubergine" in text for text in texts)
