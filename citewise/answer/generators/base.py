"""The seam every answer provider implements."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from citewise.search.store import Hit

REFUSAL = "I could not find the answer to that in the documents."


@dataclass(frozen=True)
class Turn:
    """One earlier message of the conversation."""

    role: Literal["user", "assistant"]
    content: str


class Generator(Protocol):
    """Streams an answer to ``question`` from ``sources`` (cited as [1], [2], ... in order).

    A generator may also have a ``cache_identity`` string naming everything that shapes its
    answers (provider, model, prompts, weights): answers are cached only for generators that
    have one, under it (``citewise.serving.answer_cache``). And a ``reads_around`` count: the
    answerer then adds the passages next to that many of the best ones to ``sources`` (after
    the retrieved ones, with ``retrieved`` False).
    """

    def stream(self, question: str, sources: Sequence[Hit]) -> AsyncIterator[str]: ...

    async def condense(self, question: str, history: Sequence[Turn]) -> str:
        """The question rewritten to stand alone, given the conversation before it."""
        ...


# Words that point back into the conversation ("what about *it*", "and *those*?").
_REFERRING = re.compile(
    r"\b(it|its|they|them|their|this|that|these|those|there|he|she|him|his|her|one|ones|"
    r"same|also|else|instead|too)\b",
    re.IGNORECASE,
)
_CONTINUATION = re.compile(r"^\s*(and|but|also|what about|how about|why|so)\b", re.IGNORECASE)


SHORT_QUESTION_WORDS = 3


def condense_heuristic(question: str, history: Sequence[Turn]) -> str:
    """Offline follow-up handling: a question that leans on the conversation gets the last
    user question prepended, so retrieval sees what "it" or "that plan" refers to.

    A question leans on the conversation when it is very short (three words or fewer: "and
    pricing?"), starts like a continuation ("and", "what about"), or uses a referring word
    ("it", "those", "there"). Short but complete questions ("Which four plans does Tallybird
    have?") stand alone: with the earlier question prepended, they were answered about that
    one (found by the widget's browser tests).
    """
    earlier = [t.content.strip() for t in history if t.role == "user" and t.content.strip()]
    if not earlier:
        return question
    leans = (
        len(question.split()) <= SHORT_QUESTION_WORDS
        or _CONTINUATION.search(question) is not None
        or _REFERRING.search(question) is not None
    )
    return f"{earlier[-1]} {question}" if leans else question


def is_refusal(answer: str) -> bool:
    return answer.strip().rstrip(".").lower() == REFUSAL.rstrip(".").lower()
