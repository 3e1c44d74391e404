"""``citewise eval answers --docs-qa``: score answers to questions about a documentation folder.

Each question names the pages that answer it (paths relative to the folder) and a short key
phrase a correct answer must contain. Questions the pages do not answer name neither; Citewise
handles them well by refusing. The file is JSON lines, one question a line:
``{"id", "question", "kind", "gold_pages", "key_phrase"}``.
"""

from __future__ import annotations

import json
import re
import statistics
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citewise.answer.citations import MARKER
from citewise.errors import InvalidRequest
from citewise.shapes import Answer
from cli.evaluation import percentile

UNANSWERABLE = "unanswerable"
KINDS = ("fact", "how", "what", "yesno", UNANSWERABLE)
# The per-question flags of an answerable question, each reported as a share.
ANSWERABLE_FLAGS = (
    "gold_page_retrieved",
    "gold_page_cited",
    "key_phrase_retrieved",
    "key_phrase_in_answer",
    "refused",
    "unsupported",
)


@dataclass(frozen=True)
class DocsQuestion:
    """One labelled question; ``gold_pages`` is empty and ``key_phrase`` None when unanswerable."""

    id: str
    question: str
    kind: str
    gold_pages: tuple[str, ...]
    key_phrase: str | None

    @property
    def answerable(self) -> bool:
        return self.kind != UNANSWERABLE


def read_docs_qa(path: Path) -> list[DocsQuestion]:
    """The questions of a ``--docs-qa`` file; ``InvalidRequest`` naming the line of a bad one."""
    questions: list[DocsQuestion] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            questions.append(_question(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest(f"{path.name}, line {number}: {exc}") from exc
    return questions


def _question(record: dict[str, Any]) -> DocsQuestion:
    question = DocsQuestion(
        id=str(record["id"]),
        question=str(record["question"]),
        kind=str(record["kind"]),
        gold_pages=tuple(str(page) for page in record["gold_pages"]),
        key_phrase=None if record["key_phrase"] is None else str(record["key_phrase"]),
    )
    if question.kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {question.kind!r}")
    if question.answerable and not (question.gold_pages and question.key_phrase):
        raise ValueError("an answerable question needs gold_pages and a key_phrase")
    if not question.answerable and (question.gold_pages or question.key_phrase is not None):
        raise ValueError("an unanswerable question has no gold_pages and a null key_phrase")
    return question


def missing_pages(questions: Iterable[DocsQuestion], docs: Path) -> list[str]:
    """Gold pages that are not files under ``docs`` (a question file meant for another folder)."""
    pages = {page for question in questions for page in question.gold_pages}
    return sorted(page for page in pages if not (docs / page).is_file())


def normalize_phrase(text: str) -> str:
    """SQuAD's normalisation (lower case, no punctuation, no articles, single spaces), except
    that punctuation becomes a space rather than vanishing: ``fastapi[standard]`` and
    ``/openapi.json`` keep their word boundaries, so they match inside a URL or a command."""
    spaced = "".join(" " if _is_punctuation(ch) else ch for ch in text.lower())
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", spaced).split())


def contains_phrase(haystack: str, phrase: str) -> bool:
    """Whether the normalised ``phrase`` stands in the normalised ``haystack`` as whole words
    (``201`` is not found inside ``2010``)."""
    wanted = normalize_phrase(phrase)
    return bool(wanted) and f" {wanted} " in f" {normalize_phrase(haystack)} "


def judge(question: DocsQuestion, answer: Answer, ms: float) -> dict[str, Any]:
    """One question's outcome: what was asked and answered, and its flags (None where a flag
    does not apply: an unanswerable question has no gold page or key phrase)."""
    text = MARKER.sub("", answer.answer)
    # The retrieved passages; those the offline answerer read around them are not retrieval's.
    sources = [s.source for s in answer.sources if s.retrieved]
    cited = list(dict.fromkeys(c.source for c in answer.citations))
    record: dict[str, Any] = {
        "id": question.id,
        "kind": question.kind,
        "question": question.question,
        "answer": answer.answer,
        "refused": answer.refused,
        "sources": sources,
        "cited": cited,
        "gold_pages": list(question.gold_pages),
        "key_phrase": question.key_phrase,
        "answer_words": len(text.split()),
        # the support check fired: a sentence citing a passage is not backed by it
        "unsupported": any(not c.supported for c in answer.citations),
        "ms": round(ms, 1),
    }
    gold, key = set(question.gold_pages), question.key_phrase
    record["gold_page_retrieved"] = bool(gold & set(sources)) if gold else None
    record["gold_page_cited"] = bool(gold & set(cited)) if gold else None
    record["key_phrase_retrieved"] = (
        any(contains_phrase(s.text, key) for s in answer.sources if s.retrieved) if key else None
    )
    record["key_phrase_in_answer"] = contains_phrase(text, key) if key else None
    return record


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The shares over answerable questions, the refusal rate over unanswerable ones, answer
    length (answers that are not refusals) and the median latency, overall and by kind."""
    answerable = [r for r in records if r["kind"] != UNANSWERABLE]
    unanswerable = [r for r in records if r["kind"] == UNANSWERABLE]
    words = [r["answer_words"] for r in records if not r["refused"]]
    scores: dict[str, Any] = {flag: _share(answerable, flag) for flag in ANSWERABLE_FLAGS}
    scores["unanswerable_refused"] = _share(unanswerable, "refused")
    scores["answer_words_mean"] = round(statistics.fmean(words), 1) if words else None
    scores["answer_words_median"] = statistics.median(words) if words else None
    scores["p50_ms"] = round(percentile([r["ms"] for r in records], 0.5), 1)
    scores["questions"] = len(records)
    scores["answerable"] = len(answerable)
    scores["unanswerable"] = len(unanswerable)
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        of_kind = [r for r in records if r["kind"] == kind]
        if of_kind:
            flags = ("refused",) if kind == UNANSWERABLE else ANSWERABLE_FLAGS
            by_kind[kind] = {"questions": len(of_kind)} | {f: _share(of_kind, f) for f in flags}
    scores["by_kind"] = by_kind
    return scores


def _share(records: list[dict[str, Any]], flag: str) -> float | None:
    if not records:
        return None
    return round(sum(bool(r[flag]) for r in records) / len(records), 4)


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch)[0] in "PS"
