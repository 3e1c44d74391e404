"""The OpenAI-compatible face, driven by the official ``openai`` SDK over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from api.main import create_app
from citewise.answer.generators.base import REFUSAL
from citewise.search.embeddings import LocalEmbeddings
from citewise.settings import Settings
from tests.answer_helpers import PARROTS_KB, sample_home, serve

INVITATION = "How long is an invitation valid?"
PARROT = "What is the office parrot called?"
HANDBOOK = "account/admin-handbook.docx"


@pytest.fixture(scope="module")
def url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
) -> Iterator[str]:
    home = sample_home(request.config, tmp_path_factory, embeddings, cache_dir)
    # No answer cache; the parrots' answers carry their sources in the text by default.
    settings = Settings(home=home, cache_dir=cache_dir, redis_url="off", chat_footnotes="parrots")
    with serve(create_app(settings)) as served:
        yield served


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60) as sdk:
        yield sdk


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_non_streaming_completion_carries_citations(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="default", messages=user(INVITATION))

    assert completion.object == "chat.completion" and completion.model == "default"
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", completion.id)
    [choice] = completion.choices
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    content = choice.message.content or ""
    assert "7 days" in content and "[1]" in content

    extra = completion.model_extra or {}
    assert extra["refused"] is False
    citations = extra["citations"]
    assert citations and {c["source"] for c in citations} == {HANDBOOK}
    assert {c["n"] for c in citations} == {int(n) for n in re.findall(r"\[(\d+)\]", content)}
    assert any("7 days" in c["quote"] for c in citations)
    assert all(c["supported"] for c in citations)


def test_streaming_completion_ends_with_citations(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="default", messages=user(INVITATION), stream=True)
    chunks = list(stream)

    assert len(chunks) >= 3
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.model == "default" for c in chunks)
    # Every chunk of one completion carries the same id, as OpenAI's do.
    assert len({c.id for c in chunks}) == 1
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", chunks[0].id)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "7 days" in text

    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    extra = final.model_extra or {}
    assert extra["refused"] is False
    assert {c["source"] for c in extra["citations"]} == {HANDBOOK}
    assert all("citations" not in (c.model_extra or {}) for c in chunks[:-1])

    whole = client.chat.completions.create(model="default", messages=user(INVITATION))
    assert text.strip() == whole.choices[0].message.content
    assert extra["citations"] == (whole.model_extra or {})["citations"]


def test_the_model_name_selects_the_knowledge_base(client: openai.OpenAI) -> None:
    parrots = client.chat.completions.create(model=PARROTS_KB, messages=user(PARROT))
    assert "Captain Biscuit" in (parrots.choices[0].message.content or "")
    extra = parrots.model_extra or {}
    assert extra["refused"] is False
    assert {c["source"] for c in extra["citations"]} == {"office-pets.md"}

    default = client.chat.completions.create(model="default", messages=user(PARROT))
    assert "Captain Biscuit" not in (default.choices[0].message.content or "")

    invitation = client.chat.completions.create(model=PARROTS_KB, messages=user(INVITATION))
    assert "7 days" not in (invitation.choices[0].message.content or "")


def test_off_topic_question_is_refused(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="default", messages=user("Who won the 1998 World Cup?")
    )
    assert completion.choices[0].message.content == REFUSAL
    assert (completion.model_extra or {})["refused"] is True
    assert (completion.model_extra or {})["citations"] == []


def test_conversation_history_reaches_the_answerer(client: openai.OpenAI) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "How do I invite people to my company?"},
        {"role": "assistant", "content": "Go to Settings > Users and select Invite [1]."},
        {"role": "user", "content": "how long is it valid?"},
    ]
    completion = client.chat.completions.create(model="default", messages=messages)
    assert "7 days" in (completion.choices[0].message.content or "")


def test_models_lists_the_knowledge_bases(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = [m.id for m in models]
    assert {"default", PARROTS_KB} <= set(ids)
    assert all(m.object == "model" and m.owned_by == "citewise" for m in models)


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_not_found(client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-kb", messages=user(INVITATION), stream=stream)
    assert caught.value.status_code == 404
    assert "no-such-kb" in caught.value.message


def test_bad_requests_are_sdk_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="default", messages=[{"role": "assistant", "content": "I speak first."}]
        )
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="default", messages=user("   "))
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="default", messages=[])


# --- citations where a client cannot show them ----------------------------------------------


def test_a_langchain_chat_model_sees_where_each_marker_points(url: str) -> None:
    model = ChatOpenAI(
        base_url=f"{url}/v1",
        api_key=SecretStr("unused"),
        model="default",
        max_retries=0,
        timeout=60,
        extra_body={"footnotes": True},
    )
    reply = str(model.invoke(INVITATION).content)

    answer, _, sources = reply.partition("\n\nSources:\n")
    markers = set(re.findall(r"\[(\d+)\]", answer))
    lines = sources.splitlines()
    assert markers and {re.match(r"\[(\d+)\]", line)[1] for line in lines} == markers  # type: ignore[index]
    assert all(HANDBOOK in line and "Tallybird Administrator Handbook" in line for line in lines)

    streamed = "".join(str(chunk.content) for chunk in model.stream(INVITATION))
    assert streamed.startswith(answer) and "\n\nSources:\n[1] " in streamed


def test_footnotes_follow_the_knowledge_base_setting_unless_the_request_says(
    client: openai.OpenAI,
) -> None:
    def content(model: str, **extra: Any) -> str:
        reply = client.chat.completions.create(
            model=model, messages=user(PARROT if model == PARROTS_KB else INVITATION), **extra
        )
        return reply.choices[0].message.content or ""

    assert "Sources:" not in content("default")  # clients reading the citations field
    assert "\n\nSources:\n[1] " in content(PARROTS_KB)  # the setting names this one
    assert "Sources:" not in content(PARROTS_KB, extra_body={"footnotes": False})
