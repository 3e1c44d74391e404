"""The Vercel AI SDK face, read by the SDK's own client code in Node over real HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.main import create_app
from citewise.answer.generators.base import REFUSAL
from citewise.search.embeddings import LocalEmbeddings
from citewise.settings import Settings
from tests.answer_helpers import PARROTS_KB, sample_home, serve

NODE_CLIENTS = Path(__file__).parent / "node"
CLIENT = NODE_CLIENTS / "ui_chat_client.mjs"
INVITATION = "How long is an invitation valid?"
HANDBOOK = "account/admin-handbook.docx"


@pytest.fixture(scope="module")
def url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
) -> Iterator[str]:
    if shutil.which("node") is None or not (NODE_CLIENTS / "node_modules" / "ai").is_dir():
        pytest.fail("Node and tests/node's packages are needed: run `make install`")
    home = sample_home(request.config, tmp_path_factory, embeddings, cache_dir)
    settings = Settings(home=home, cache_dir=cache_dir, redis_url="off")
    with serve(create_app(settings)) as base:
        yield f"{base}/v1/ui/chat"


def ask_with_sdk(url: str, question: str, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(CLIENT), url, question, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def parts_of(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [p for p in message["parts"] if p["type"] == kind]


def test_the_sdk_assembles_text_sources_and_verified_citations(url: str) -> None:
    result = ask_with_sdk(url, INVITATION)

    assert result["error"] is None
    message = result["message"]
    assert message["role"] == "assistant" and message["id"]
    [text] = parts_of(message, "text")
    assert "7 days" in text["text"] and "[1]" in text["text"] and text["state"] == "done"
    sources = parts_of(message, "source-url")
    assert sources and [s["sourceId"] for s in sources] == [
        str(n) for n in range(1, len(sources) + 1)
    ]
    assert HANDBOOK in sources[0]["url"] and sources[0]["title"]
    [citations] = parts_of(message, "data-citations")
    assert citations["data"] and all(c["supported"] for c in citations["data"])
    assert {c["source"] for c in citations["data"]} == {HANDBOOK}
    assert message["metadata"]["refused"] is False
    assert message["metadata"]["answerId"] == message["id"]


def test_the_knowledge_base_comes_from_the_body_and_a_refusal_is_marked(url: str) -> None:
    parrot = ask_with_sdk(url, "What is the office parrot called?", PARROTS_KB)
    assert "Captain Biscuit" in parts_of(parrot["message"], "text")[0]["text"]

    refused = ask_with_sdk(url, "What is the capital of Mongolia?")
    assert parts_of(refused["message"], "text")[0]["text"] == REFUSAL
    assert refused["message"]["metadata"]["refused"] is True
    assert parts_of(refused["message"], "data-citations")[0]["data"] == []


def test_earlier_messages_are_the_conversation(url: str) -> None:
    result = ask_with_sdk(url, "Can I resend it?", "", "", INVITATION)

    assert result["error"] is None
    assert "Resend" in parts_of(result["message"], "text")[0]["text"]


def test_the_wire_is_the_ui_message_stream_protocol(url: str) -> None:
    body = {
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": INVITATION}]}]
    }
    with httpx.stream("POST", url, json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    kinds = [json.loads(d)["type"] for d in data[:-1]]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    first_text = kinds.index("text-start")
    assert set(kinds[1:first_text]) == {"source-url"}
    assert kinds[first_text:].count("text-end") == 1 and "data-citations" in kinds


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "parts": [{"type": "text", "text": "hi"}]}]}, "user"),
        (
            {
                "messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}],
                "kb": "no such",
            },
            "kb",
        ),
    ],
)
def test_a_bad_request_is_a_plain_4xx_before_any_stream(
    url: str, body: dict[str, Any], message: str
) -> None:
    response = httpx.post(url, json=body, timeout=30)

    assert 400 <= response.status_code < 500
    assert message in response.text.lower()
    assert "x-vercel-ai-ui-message-stream" not in response.headers


def test_the_sdk_reports_a_refused_request_as_an_error(url: str) -> None:
    result = ask_with_sdk(url, "How long is an invitation valid?", "no such kb!")

    assert result["message"] is None and result["error"]
