"""The documentation QA dev set is sound: each key phrase stands in a gold page, matched the
way ``citewise eval answers --docs-qa`` matches it, and the phrase matching keeps whole words."""

from __future__ import annotations

from collections import Counter

import pytest

from cli.docs_qa import KINDS, contains_phrase, read_docs_qa
from tests.conftest import REPO

DEV_SET = REPO / "bench" / "data" / "fastapi_docs_qa.jsonl"
# The corpus is shared data, beside the checkout (as bench/ reads it), never copied in.
DOCS = REPO.parent / "shared" / "eval" / "fastapi_docs" / "docs"


def test_every_key_phrase_stands_in_one_of_its_gold_pages() -> None:
    assert DOCS.is_dir(), (
        f"{DOCS} is missing: the FastAPI documentation corpus must sit in ../shared/eval "
        "beside the repository (CI checks it out there)"
    )
    questions = read_docs_qa(DEV_SET)  # refuses unanswerable questions with pages or a phrase
    assert len({q.id for q in questions}) == len(questions) >= 64
    assert set(Counter(q.kind for q in questions)) == set(KINDS)
    unsupported = []
    for question in questions:
        if not question.answerable:
            assert not question.gold_pages and question.key_phrase is None, question.id
            continue
        assert question.key_phrase is not None
        pages = [(DOCS / page).read_text(encoding="utf-8") for page in question.gold_pages]
        if not any(contains_phrase(page, question.key_phrase) for page in pages):
            unsupported.append((question.id, question.key_phrase, question.gold_pages))
    assert not unsupported


@pytest.mark.parametrize(
    ("haystack", "phrase", "found"),
    [
        ("Run `pip install 'fastapi[standard]'`.", 'pip install "fastapi[standard]"', True),
        ("See http://127.0.0.1:8000/openapi.json", "/openapi.json", True),
        ("Use the `status_code` parameter", "status code", True),
        ("In 2010 it was released", "201", False),
        ("It returns 201 [1].", "201", True),
        ("anything", "", False),
    ],
)
def test_key_phrases_match_whole_words_whatever_the_punctuation(
    haystack: str, phrase: str, found: bool
) -> None:
    assert contains_phrase(haystack, phrase) is found
