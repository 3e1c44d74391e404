"""Attacks found by the red team on small surfaces, each through the real app or the real code:
knowledge base names, job paths, the missing documents report, client addresses behind a
proxy. docs/security.md ("Attacks tested") says what each one was."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.errors import InvalidKnowledgeBaseName, InvalidRequest
from citewise.knowledge_base import validate_kb
from citewise.serving.conversations import checked_id
from citewise.settings import Settings


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
