"""Kill -9 a ``citewise kb delete`` or ``citewise docs delete`` while it deletes: the knowledge
base (the document) is left whole or gone, never half usable, and the next delete, or an ingest
of that knowledge base, finishes the job.

"While it deletes" without a hook in the code: each run is watched until its first mark shows in
the manifest (the tombstone, a row turned ``deleting``); it is then killed at once, or at a
moment spread over how long that stretch took in an uninterrupted run, so the kills land
between different steps.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from citewise.errors import KnowledgeBaseNotFound
from citewise.search.embeddings import LocalEmbeddings
from citewise.search.lexical import LexicalStore
from citewise.search.retrieval import Retriever
from citewise.search.store import ChunkStore
from citewise.settings import Settings
from citewise.wiring import build_lexical, build_store
from ingest.loaders import PARSERS
from ingest.manifest import Manifest
from tests.cli import citewise_env, command, run_json
from tests.conftest import SAMPLE

# Where between the mark and the end of an uninterrupted delete each kill lands.
FRACTIONS = (0.0, 0.25, 0.6, 1.0)


def _rows(manifest: Path, query: str) -> int:
    """What ``query`` (a count) says of the manifest now; 0 before it or its table exists."""
    if not manifest.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute(query).fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


def _watched(args: list[str], env: dict[str, str], marked: Callable[[], bool]) -> float | None:
    """Run ``citewise ARGS`` to its end; how long after its mark showed the mark was gone
    (the stretch a kill should land in), or None if it was never seen."""
    proc = subprocess.Popen(command(*args), env=env, stdout=subprocess.DEVNULL)
    seen = None
    while proc.poll() is None:
        time.sleep(0.001)  # polling a condition, not waiting for one
        if seen is None and marked():
            seen = time.monotonic()
        elif seen is not None and not marked():
            stretch = time.monotonic() - seen
            proc.wait()
            return stretch
    assert proc.returncode == 0, f"citewise {' '.join(args)} failed"
    return None


def _killed(args: list[str], env: dict[str, str], marked: Callable[[], bool], delay: float) -> bool:
    """Start ``citewise ARGS``, SIGKILL it ``delay`` seconds after its mark shows; whether it
    was still running when killed."""
    proc = subprocess.Popen(
        command(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and not marked():
        assert time.monotonic() < deadline, "the delete made no progress"
        time.sleep(0.001)
    if delay:
        time.sleep(delay)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return running


def _store(settings: Settings) -> ChunkStore:
    store = build_store(settings)
    store.renew()  # what other processes wrote, as it is on disk now
    return store


def _by_source(store: ChunkStore, kb: str) -> dict[str, set[str]]:
    ids, metadatas = store.knowledge_base(kb).ids_and_metadatas()
    found: dict[str, set[str]] = {}
    for chunk_id, metadata in zip(ids, metadatas, strict=True):
        found.setdefault(str(metadata["source"]), set()).add(chunk_id)
    return found


def _records(settings: Settings, kb: str) -> dict[str, str]:
    with Manifest.open(settings.manifest_path, kb, read_only=True) as manifest:
        return {source: r.status for source, r in manifest.records().items()}


@pytest.fixture
def home(tmp_path: Path, cache_dir: Path, redis_url: str, redis_prefix: str) -> Settings:
    return Settings(
        home=tmp_path / "home", cache_dir=cache_dir, redis_url=redis_url, redis_prefix=redis_prefix
    )


@pytest.fixture
def env(home: Settings, cache_dir: Path) -> dict[str, str]:
    return citewise_env(
        home.core.home,
        cache_dir,
        CITEWISE_REDIS_URL=str(home.redis.url),
        CITEWISE_REDIS_PREFIX=home.redis.prefix,
    )


def _folder(tmp_path: Path, name: str, sample_folders: list[str]) -> Path:
    folder = tmp_path / name
    for sample in sample_folders:
        shutil.copytree(SAMPLE / sample, folder / sample)
    return folder


def test_killed_kb_deletes_leave_it_whole_or_gone_and_are_finished(
    home: Settings, env: dict[str, str], tmp_path: Path, embeddings: LocalEmbeddings
) -> None:
    corpus = _folder(tmp_path, "corpus", ["billing", "account"])
    other = _folder(tmp_path, "other", ["expenses"])
    uploads = home.uploads_path / "default"
    tombstone = "SELECT count(*) FROM deletions WHERE kb = 'default'"

    def marked() -> bool:
        return _rows(home.manifest_path, tombstone) > 0

    def unpublished() -> bool:  # the BM25 index is going: the collection went just before
        return lexical.current_generation("default") is None

    def ingested(folder: Path) -> None:
        assert run_json("ingest", str(folder), env=env)[0] == 0
        uploads.mkdir(parents=True, exist_ok=True)
        (uploads / "upload.md").write_text("# Uploaded\n\nA file sent over HTTP.\n", "utf-8")

    lexical = build_lexical(home)
    retriever = Retriever(home.retrieval, _store(home), embeddings, lexical)
    ingested(corpus)
    stretch = _watched(["kb", "delete", "default", "--json"], env, marked)
    assert stretch is not None, "the tombstone was never seen"
    # Killed after the tombstone at moments spread over the delete, and once as soon as the
    # BM25 index starts going (the collection is gone, the rest is not).
    # Trials alternate between finishing by a delete and by an ingest.
    trials = [(marked, f) for f in FRACTIONS]
    trials[2:2] = [(unpublished, 0.0), (unpublished, 0.0)]

    for trial, (mark, fraction) in enumerate(trials):
        ingested(corpus)
        before = _by_source(_store(home), "default")
        generation = lexical.current_generation("default")
        records = _records(home, "default")
        killed = _killed(["kb", "delete", "default"], env, mark, fraction * stretch * 1.2)
        note = f"trial {trial}, killed {fraction:.0%} of {stretch * 1000:.0f} ms after its mark"

        store = _store(home)
        whole = store.exists("default")
        with Manifest.open(home.manifest_path, "default", read_only=True) as manifest:
            tombstoned, anything = manifest.deleting(), manifest.holds_anything()
        assert killed or not tombstoned, note
        if whole:  # everything as it was (the tombstone may be written: it hides nothing)
            assert _by_source(store, "default") == before, note
            assert lexical.current_generation("default") == generation, note
            assert _records(home, "default") == records, note
            assert (uploads / "upload.md").exists(), note
        else:  # gone for every search, and marked unless the delete finished
            retriever.store = store
            with pytest.raises(KnowledgeBaseNotFound):
                retriever.search(retriever.query("refund", kb="default", k=3))
            assert "default" not in store.knowledge_bases(), note
            if not tombstoned:
                assert not anything and not uploads.exists(), note
                assert lexical.current_generation("default") is None, note

        if trial % 2 == 0:  # finished by deleting again
            code, done = run_json("kb", "delete", "default", env=env)
            assert code == 0 or done["error"]["code"] == "kb_not_found", note
            assert not _store(home).exists("default"), note
            assert lexical.current_generation("default") is None, note
            assert not (home.lexical_path / "default").exists(), note
            assert not uploads.exists(), note
            with Manifest.open(home.manifest_path, "default", read_only=True) as manifest:
                assert not manifest.holds_anything(), note
        else:  # finished by the next ingest, which then starts afresh (unless it was whole)
            assert run_json("ingest", str(other), env=env)[0] == 0, note
            sources = set(_by_source(_store(home), "default"))
            afresh = tombstoned or not whole
            if afresh:  # the other folder is now the first source: bare paths
                assert sources == _paths(other), note
                assert not uploads.exists(), note
            else:
                assert sources == set(before) | {f"other/{p}" for p in _paths(other)}, note
            assert set(_records(home, "default")) == sources, note
            assert run_json("kb", "delete", "default", env=env)[0] == 0, note


def _paths(folder: Path) -> set[str]:
    """The documents an ingest of ``folder`` stores (every file of a supported type)."""
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in PARSERS
    }


def test_killed_document_deletes_leave_it_whole_or_gone_and_are_finished(
    home: Settings, env: dict[str, str], tmp_path: Path
) -> None:
    corpus = _folder(tmp_path, "corpus", ["billing", "account", "expenses"])
    other = _folder(tmp_path, "other", ["getting-started"])
    assert run_json("ingest", str(corpus), env=env)[0] == 0
    lexical = build_lexical(home)
    doomed = sorted(_paths(corpus))

    def marked_for(path: str) -> Callable[[], bool]:
        query = f"SELECT count(*) FROM files WHERE source = '{path}' AND status = 'deleting'"
        return lambda: _rows(home.manifest_path, query) > 0

    first = doomed.pop()
    stretch = _watched(["docs", "delete", "--path", first], env, marked_for(first))
    assert stretch is not None, "the row was never seen turning 'deleting'"

    for trial, fraction in enumerate(FRACTIONS):
        path = doomed.pop()
        before = _by_source(_store(home), "default")
        assert before[path], path
        killed = _killed(
            ["docs", "delete", "--path", path], env, marked_for(path), fraction * stretch * 1.2
        )
        note = f"trial {trial} ({path}), killed at {fraction:.0%} of {stretch * 1000:.0f} ms"

        after = _by_source(_store(home), "default")
        assert after.get(path, set()) in (set(), before[path]), note  # all of it, or none
        assert {s: c for s, c in after.items() if s != path} == {
            s: c for s, c in before.items() if s != path
        }, note
        status = _records(home, "default").get(path)
        assert status in (None, "done", "deleting"), note
        if status is None:  # finished: the BM25 index was published without it first
            assert not after.get(path) and path not in _bm25_sources(lexical), note
        if status == "done":
            assert not killed or after[path] == before[path], note

        if trial % 2 == 0:
            code, done = run_json("docs", "delete", "--path", path, env=env)
            assert code == 0 or done["error"]["code"] == "document_not_found", note
        else:
            assert run_json("ingest", str(other), env=env)[0] == 0, note
        final = _by_source(_store(home), "default")
        if trial % 2 == 1 and status == "done":  # never marked: the ingest keeps it
            assert final[path] == before[path], note
            continue
        assert path not in final and path not in _records(home, "default"), note
        assert path not in _bm25_sources(lexical), note
        ids = set().union(*final.values())
        assert set(lexical.load("default").ids) == ids, note  # the index covers the store


def _bm25_sources(lexical: LexicalStore) -> set[str]:
    return {str(m["source"]) for m in lexical.load("default").metadatas}
