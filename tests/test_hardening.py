"""Attacks found by the red team on small surfaces, each through the real app or the real code:
knowledge base names, job paths, the missing documents report, client addresses behind a
proxy. docs/security.md ("Attacks tested") says what each one was."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.errors import InvalidKnowledgeBaseName, InvalidRequest
from citewise.knowledge_base import validate_kb
from citewise.serving.conversations import checked_id
from citewise.settings import Settings
from tests.cli import citewise_env, run


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(redis_url="off"))) as client:
        yield client


@pytest.mark.parametrize("name", ["docs\n", "docs\r\n", "\ndocs", "docs\x00"])
def test_a_knowledge_base_name_with_a_line_break_is_refused(name: str) -> None:
    with pytest.raises(InvalidKnowledgeBaseName):
        validate_kb(name)
    with pytest.raises(InvalidKnowledgeBaseName):
        validate_kb(name + ".staging", internal=True)


def test_a_knowledge_base_name_with_a_trailing_newline_is_a_400(client: TestClient) -> None:
    searched = client.post("/v1/search", json={"query": "refund", "kb": "docs\n"})
    assert searched.status_code == 400, searched.text
    assert searched.json()["error"]["code"] == "invalid_kb_name"
    flushed = client.post("/v1/kbs/docs%0A/ingest", json={"path": "x"})
    assert flushed.status_code == 400, flushed.text
    assert flushed.json()["error"]["code"] == "invalid_kb_name"


def test_a_conversation_id_with_a_trailing_newline_is_refused() -> None:
    assert checked_id("0" * 32) == "0" * 32
    with pytest.raises(InvalidRequest):
        checked_id("0" * 32 + "\n")


@pytest.fixture
def jobs_client(
    make_settings: Callable[..., Settings], tmp_path: Path, redis_url: str, redis_prefix: str
) -> Iterator[TestClient]:
    root = tmp_path / "ingest-root"
    root.mkdir()
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    settings = make_settings(redis_url=redis_url, redis_prefix=redis_prefix, ingest_root=root)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("docs\x00.md", "NUL"),
        ("/etc\x00/passwd", "NUL"),
        ("loop-a", "symbolic links"),
        ("loop-a/guide.md", "symbolic links"),
        ("x" * 4000, "cannot be resolved"),  # a name longer than the file system allows
    ],
)
def test_a_job_path_with_a_nul_byte_or_a_symlink_loop_is_a_400(
    jobs_client: TestClient, path: str, says: str
) -> None:
    response = jobs_client.post("/v1/kbs/default/ingest", json={"path": path})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and says in error["message"]
    assert "ingest-root" not in error["message"]  # no server path in the message


HOSTILE = "What is the capital of France? \x1b]0;pwned\x07\x1b[2J\r\x9b31m [red]x[/red]"


def test_questions_and_comments_reach_the_report_without_escapes_or_markup(
    home: Path, cache_dir: Path, redis_url: str, redis_prefix: str
) -> None:
    settings = Settings(
        home=home, cache_dir=cache_dir, redis_url=redis_url, redis_prefix=redis_prefix
    )
    with TestClient(create_app(settings)) as client:
        refused = client.post("/v1/ask", json={"question": HOSTILE})
        assert refused.status_code == 200 and refused.json()["refused"], refused.text
        answered = client.post("/v1/ask", json={"question": "How long is an invitation valid?"})
        feedback = {
            "answer_id": answered.json()["answer_id"],
            "rating": "down",
            "comment": "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\ [bold]me[/bold]\tok",
        }
        assert client.post("/v1/feedback", json=feedback).status_code == 202
        # An entry written before this fix (or by an older replica) holds the raw text.
        raw = redis.Redis.from_url(redis_url)
        raw.xadd(
            f"{redis_prefix}:outcomes",
            {
                "kind": "refused",
                "kb": "default",
                "question": "Who won the 1998 world cup?\x1b[31m\x07 [blink]now[/blink]",
                "answer_id": "",
                "via": "public",
                "at": f"{time.time():.3f}",
            },
        )
        raw.close()
        report = client.get("/v1/admin/report", params={"since": "1h"})
    assert report.status_code == 200, report.text
    groups = report.json()["groups"]
    texts = [g["question"] for g in groups] + [c for g in groups for c in g["comments"]]
    assert texts and all(not _controls(text) for text in texts), texts
    assert "What is the capital of France?  [red]x[/red]" in texts  # the sequences are gone
    assert "click [bold]me[/bold]\tok" in texts

    env = citewise_env(
        home,
        cache_dir,
        CITEWISE_REDIS_URL=redis_url,
        CITEWISE_REDIS_PREFIX=redis_prefix,
        COLUMNS="250",
    )
    printed = run("report", "--since", "1h", env=env)
    assert printed.returncode == 0, printed.stderr
    assert not _controls(printed.stdout.replace("\n", "")), repr(printed.stdout)
    # Markup is printed as written, not obeyed.
    assert "[red]x[/red]" in printed.stdout and "[blink]now[/blink]" in printed.stdout
    assert "[bold]me[/bold]" in printed.stdout


def _controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F]
