"""Key phrases of ``citewise eval answers --docs-qa`` match as whole words, whatever the
punctuation around them."""

from __future__ import annotations

import pytest

from cli.docs_qa import contains_phrase


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
