"""The offline follow-up heuristic: which questions lean on the conversation."""

from __future__ import annotations

import pytest

from citewise.answer.generators.base import Turn, condense_heuristic

EARLIER = "How long is an invitation valid?"
HISTORY = [Turn("user", EARLIER), Turn("assistant", "An invitation is valid for 7 days [1].")]


@pytest.mark.parametrize(
    "question",
    ["Can I resend it?", "And for annual plans?", "What about those limits?", "Pricing?"],
)
def test_questions_that_lean_on_the_conversation_get_the_earlier_question(question: str) -> None:
    assert condense_heuristic(question, HISTORY) == f"{EARLIER} {question}"


@pytest.mark.parametrize(
    "question",
    ["Which four plans does Tallybird have?", "How do I cancel my subscription?"],
)
def test_complete_questions_stand_alone(question: str) -> None:
    assert condense_heuristic(question, HISTORY) == question


def test_without_an_earlier_user_question_nothing_is_added() -> None:
    assert condense_heuristic("Can I resend it?", []) == "Can I resend it?"
