"""The ``citewise`` command as scripts and people use it, in a subprocess, offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
    "answer_units_embedded",
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
    fields = {"chunk_id", "source", "title", "heading", "page", "url", "score", "text"}
    assert fields <= set(hits[0])
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


# A command, a variable set to something it does not allow, and the one line that says so.
REFUSED_SETTINGS = [
    (
        ["ingest", "docs"],
        "CITEWISE_CHUNK_TOKENS=abc",
        "CITEWISE_CHUNK_TOKENS: expected an integer, at least 16 and at most 4096",
    ),
    (
        ["serve"],
        "CITEWISE_WORKERS=sometimes",
        "CITEWISE_WORKERS: expected 'embedded' or 'external'",
    ),
    (
        ["worker", "--burst"],
        "CITEWISE_RATE_LIMIT_FAIL_OPEN=perhaps",
        "CITEWISE_RATE_LIMIT_FAIL_OPEN: expected true or false",
    ),
    (
        ["search", "refunds"],
        "CITEWISE_CHROMA_URL=chroma.internal:8000",
        "CITEWISE_CHROMA_URL must look like http://host:port",
    ),
    (
        ["kb", "list"],
        "CITEWISE_TRUSTED_PROXIES=10.0.0.1,sk-pasted-here",
        "CITEWISE_TRUSTED_PROXIES: entry 2 is not an IP address or network such as 10.0.0.5 "
        "or 10.0.0.0/24",
    ),
    (
        ["ask", "How do refunds work?"],
        "CITEWISE_FAKE_REPLIES=one, two",
        "CITEWISE_FAKE_REPLIES: expected JSON (Expecting value, character 1)",
    ),
]


@pytest.mark.parametrize(("args", "assignment", "said"), REFUSED_SETTINGS)
def test_a_refused_setting_is_one_line_and_exit_2(
    args: list[str], assignment: str, said: str, tmp_path: Path, cache_dir: Path
) -> None:
    variable, _, value = assignment.partition("=")
    done = run(*args, env=citewise_env(tmp_path / "home", cache_dir, **{variable: value}))
    assert (done.returncode, done.stderr, done.stdout) == (2, f"citewise: {said}\n", "")


def test_a_malformed_env_file_is_one_line_and_exit_2(tmp_path: Path, cache_dir: Path) -> None:
    settings_file = tmp_path / "citewise.env"
    settings_file.write_text("CITEWISE_DEFAULT_KB=docs\nCITEWISE_LLM_API_KEY sk-pasted\n")
    env = citewise_env(tmp_path / "home", cache_dir, CITEWISE_ENV_FILE=str(settings_file))
    done = run("docs", "list", env=env)
    said = f"{settings_file}: line 2 is not NAME=value (quote values with spaces; "
    assert done.returncode == 2 and done.stderr.startswith(f"citewise: {said}")
    assert len(done.stderr.splitlines()) == 1 and "sk-pasted" not in done.stderr


def test_the_app_factory_under_uvicorn_says_so_too(tmp_path: Path, cache_dir: Path) -> None:
    env = citewise_env(tmp_path / "home", cache_dir, CITEWISE_LOG_FORMAT="xml")
    command = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", "0"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    said = "citewise: CITEWISE_LOG_FORMAT: expected 'auto', 'json' or 'text'\n"
    assert (done.returncode, done.stderr) == (2, said)


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
