"""The ``citewise`` command as scripts and people use it, in a subprocess, offline."""

from __future__ import annotations

from pathlib import Path

from tests.cli import citewise_env, run, run_json

REPORT_KEYS = {
    "kb",
    "files_seen",
    "files_added",
    "files_changed",
    "files_unchanged",
    "files_deleted",
    "files_skipped",
    "files_failed",
    "failures",
    "chunks_added",
    "chunks_deleted",
    "chunks_unchanged",
    "chunks_embedded",
    "embed_cache_hits",
    "seconds",
}


def test_ingest_json_contract_and_search(tmp_path: Path, corpus: Path, cache_dir: Path) -> None:
    env = citewise_env(tmp_path / "home", cache_dir)
    (corpus / "notes.csv").write_text("a,b\n1,2\n", encoding="utf-8")

    code, report = run_json("ingest", str(corpus), "--kb", "docs", env=env)

    assert code == 0
    assert set(report) >= REPORT_KEYS
    assert report["kb"] == "docs" and report["files_added"] == 5 and report["files_skipped"] == 1
    assert report["failures"] == [] and isinstance(report["seconds"], float)

    code, hits = run_json("search", "invoice", "--kb", "docs", "-k", "3", env=env)
    assert code == 0 and len(hits) == 3
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert {"chunk_id", "source", "title", "heading", "page", "score", "text"} <= set(hits[0])
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_failed_files_exit_1_and_are_listed(tmp_path: Path, corpus: Path, cache_dir: Path) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-garbage")
    code, report = run_json("ingest", str(corpus), env=citewise_env(tmp_path / "h", cache_dir))
    assert code == 1
    assert [f["path"] for f in report["failures"]] == ["broken.pdf"]
    assert report["files_added"] == 5


def test_usage_errors_exit_2_with_a_message(tmp_path: Path, cache_dir: Path) -> None:
    env = citewise_env(tmp_path / "home", cache_dir)

    missing = run("ingest", str(tmp_path / "nope"), env=env)
    bad_kb = run("ingest", str(tmp_path), "--kb", "Bad Name!", env=env)
    no_args = run("ingest", env=env)

    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    assert bad_kb.returncode == 2 and "invalid knowledge base name" in bad_kb.stderr
    assert no_args.returncode == 2
    assert "Traceback" not in missing.stderr + bad_kb.stderr + no_args.stderr


def test_search_on_a_missing_knowledge_base_explains(tmp_path: Path, cache_dir: Path) -> None:
    code, body = run_json("search", "anything", env=citewise_env(tmp_path / "home", cache_dir))
    assert code == 1
    assert body["error"]["code"] == "kb_not_found" and "ingest it first" in body["error"]["message"]


def test_terminal_summary_is_readable(tmp_path: Path, corpus: Path, cache_dir: Path) -> None:
    done = run("ingest", str(corpus), "--dry-run", env=citewise_env(tmp_path / "h", cache_dir))
    assert done.returncode == 0
    assert "Plan (dry run)" in done.stdout and "chunks embedded" in done.stdout


def test_the_embedded_redis_keeps_embeddings_between_runs(
    tmp_path: Path, corpus: Path, cache_dir: Path
) -> None:
    home = tmp_path / "home"
    env = citewise_env(home, cache_dir)  # no CITEWISE_REDIS_URL: the embedded Redis

    code, first = run_json("ingest", str(corpus), env=env)
    assert code == 0 and first["chunks_embedded"] > 0 and first["embed_cache_hits"] == 0
    # The last process out stopped the server and saved the cache under the home.
    assert (home / "redis" / "citewise.rdb").exists()
    assert not (home / "redis" / "citewise.rdb.settings").exists()

    code, rebuilt = run_json("ingest", str(corpus), "--rebuild", env=env)
    assert code == 0 and rebuilt["chunks_added"] == first["chunks_added"]
    assert rebuilt["chunks_embedded"] == 0
    assert rebuilt["embed_cache_hits"] == first["chunks_embedded"]

    code, _ = run_json("search", "invoice", env=env)
    assert code == 0
    assert not (home / "redis" / "citewise.rdb.settings").exists()  # stopped every time


def test_ask_goes_through_the_answer_cache_and_prints_text_as_written(
    tmp_path: Path, corpus: Path, cache_dir: Path
) -> None:
    env = citewise_env(tmp_path / "home", cache_dir)
    (corpus / "drafts.md").write_text(
        "# Draft receipts\n\nReceipts tagged [draft] stay private to their owner until they "
        "are submitted for approval.\n",
        encoding="utf-8",
    )
    assert run_json("ingest", str(corpus), env=env)[0] == 0
    question = "Who can see receipts tagged draft?"

    code, first = run_json("ask", question, env=env)
    assert code == 0 and first["cached"] is False
    assert [c["source"] for c in first["citations"]] == ["drafts.md"]
    code, again = run_json("ask", question, env=env)  # another process, the same Redis
    assert code == 0 and again["cached"] is True
    assert (again["answer"], again["citations"]) == (first["answer"], first["citations"])

    shown = run("ask", question, env=env)
    assert shown.returncode == 0
    assert "[draft]" in shown.stdout  # document text, not Rich markup
    assert "[1] drafts.md" in shown.stdout
