"""Files are opened once, beneath their folder, never through a link that leads out of it; a
file swapped for a link while ingests run never gets the link's target read."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from citewise.errors import DocumentError
from citewise.settings import Settings
from citewise.wiring import build_store
from ingest.jobs import _ingest_root_holding
from ingest.opening import TooLargeFile, hash_beneath, read_beneath
from ingest.report import IngestReport

SECRET = "Aubergine-7731 is the vault code."
PUBLIC = "# Handbook\n\nThe office opens at nine and closes at five on weekdays.\n"


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path]:
    """An ingest root with a document in a subfolder, and a secret outside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "docs").mkdir(parents=True)
    outside.mkdir()
    (root / "docs" / "handbook.md").write_text(PUBLIC, encoding="utf-8")
    (outside / "secret.md").write_text(f"# Vault\n\n{SECRET}\n", encoding="utf-8")
    return root, outside


def test_a_regular_file_is_read_and_hashed_once(place: tuple[Path, Path]) -> None:
    root, _ = place
    handbook = root / "docs" / "handbook.md"

    assert read_beneath(root, handbook, 1 << 20) == PUBLIC.encode()
    digest, size = hash_beneath(root, handbook, 1 << 20)
    assert size == len(PUBLIC.encode()) and len(digest) == 64


def test_a_link_inside_the_folder_is_read_and_one_leading_out_is_not(
    place: tuple[Path, Path],
) -> None:
    root, outside = place
    (root / "alias.md").symlink_to(Path("docs") / "handbook.md")
    (root / "escape.md").symlink_to(outside / "secret.md")

    assert read_beneath(root, root / "alias.md", 1 << 20) == PUBLIC.encode()
    with pytest.raises(DocumentError, match="outside the ingested folder"):
        read_beneath(root, root / "escape.md", 1 << 20)


def test_a_folder_on_the_path_that_is_a_link_is_not_followed(place: tuple[Path, Path]) -> None:
    root, outside = place
    (root / "linked").symlink_to(outside, target_is_directory=True)

    with pytest.raises(DocumentError, match="symbolic link"):
        read_beneath(root, root / "linked" / "secret.md", 1 << 20)


def test_a_pipe_is_refused_without_blocking(place: tuple[Path, Path]) -> None:
    root, _ = place
    os.mkfifo(root / "pipe.md")

    with pytest.raises(DocumentError, match="not a regular file"):
        read_beneath(root, root / "pipe.md", 1 << 20)


def test_a_file_over_the_limit_is_refused_and_a_path_outside_is_never_opened(
    place: tuple[Path, Path],
) -> None:
    root, outside = place

    with pytest.raises(TooLargeFile, match="CITEWISE_MAX_FILE_MB"):
        read_beneath(root, root / "docs" / "handbook.md", 10)
    with pytest.raises(DocumentError, match="outside the ingested folder"):
        read_beneath(root, outside / "secret.md", 1 << 20)
    with pytest.raises(DocumentError, match="outside the ingested folder"):
        read_beneath(root, root / "docs" / ".." / ".." / "outside" / "secret.md", 1 << 20)


def test_a_job_reads_beneath_the_ingest_root_only_when_its_paths_are_in_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    assert _ingest_root_holding([root / "docs"], root) == root.resolve()
    assert _ingest_root_holding([tmp_path / "home" / "uploads" / "kb"], root) is None
    assert _ingest_root_holding([root / "docs"], None) is None


@pytest.fixture
def flipping(place: tuple[Path, Path]) -> Iterator[Callable[[], int]]:
    """A thread swapping ``root/docs/flip.md`` between a regular file and a link to the secret
    (each swap one atomic rename), as fast as it can; yields how many swaps it has made."""
    root, outside = place
    docs = root / "docs"
    stop, swaps = threading.Event(), [0]

    def flip() -> None:
        while not stop.is_set():
            (docs / ".next").unlink(missing_ok=True)
            if swaps[0] % 2:
                (docs / ".next").write_text(PUBLIC.replace("nine", "ten"), encoding="utf-8")
            else:
                (docs / ".next").symlink_to(outside / "secret.md")
            os.replace(docs / ".next", docs / "flip.md")
            swaps[0] += 1

    (docs / "flip.md").write_text(PUBLIC, encoding="utf-8")
    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    yield lambda: swaps[0]
    stop.set()
    thread.join()


def test_a_file_swapped_for_a_link_while_ingests_run_never_yields_outside_content(
    place: tuple[Path, Path],
    flipping: Callable[[], int],
    make_settings: Callable[..., Settings],
    ingest: Callable[..., IngestReport],
) -> None:
    root, _ = place
    reports = [ingest(root / "docs", confine=root) for _ in range(6)]

    assert flipping() > 100  # the swaps really ran during the ingests
    stored = build_store(make_settings()).knowledge_base("default")
    ids, texts, _ = stored.all_chunks()
    assert ids and not any("Aubergine" in text for text in texts)
    assert all(not any("Aubergine" in (f.error or "") for f in r.failures) for r in reports)
