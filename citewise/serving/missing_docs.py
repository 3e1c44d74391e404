"""The "missing documents" report: unanswered and disliked questions, grouped by meaning.

Questions are normalised (case, spacing, trailing punctuation) and counted; the distinct ones
are embedded with the local model and grouped greedily, most frequent first: a question joins
the first group whose centroid has a cosine of at least ``SIMILARITY`` with it, or starts
its own.
The group's count says how often the corpus failed that need. Groups come out most frequent
first, then most recent.

The threshold is conservative on purpose, because merging two different needs hides one,
while leaving two wordings apart only costs a row. Measured with MiniLM on questions about the
sample help centre: "what is the capital of france" / "which city is the capital of france"
0.97 and "how do i export invoices to xero" / "can i send my invoices to xero" 0.82, but also
"pay my invoices with bitcoin" / "... by bank transfer" 0.84 (different needs) while "pay with
bitcoin" / "is paying with bitcoin supported" scored only 0.60. At 0.85 near-identical
rewordings merge and needs that share most of their words stay apart.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from citewise.errors import InvalidRequest
from citewise.serving.outcomes import Outcome

SIMILARITY = 0.85
MAX_VARIANTS = 5
MAX_COMMENTS = 5


@dataclass
class Group:
    question: str  # the most frequent wording
    count: int = 0
    refused: int = 0
    low_confidence: int = 0
    disliked: int = 0
    kbs: set[str] = field(default_factory=set)
    last_seen: float = 0.0
    variants: Counter[str] = field(default_factory=Counter)
    comments: list[str] = field(default_factory=list)
    answer_ids: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome, wording: str) -> None:
        self.count += 1
        if outcome.kind == "refused":
            self.refused += 1
        elif outcome.kind == "low_confidence":
            self.low_confidence += 1
        else:
            self.disliked += 1
        if outcome.comment and len(self.comments) < MAX_COMMENTS:
            self.comments.append(outcome.comment)
        if len(self.answer_ids) < MAX_COMMENTS and outcome.answer_id:
            self.answer_ids.append(outcome.answer_id)
        self.kbs.add(outcome.kb)
        self.last_seen = max(self.last_seen, outcome.at)
        self.variants[wording] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "count": self.count,
            "refused": self.refused,
            "low_confidence": self.low_confidence,
            "disliked": self.disliked,
            "kbs": sorted(self.kbs),
            "last_seen": self.last_seen,
            "variants": [
                {"question": q, "count": n} for q, n in self.variants.most_common(MAX_VARIANTS)
            ],
            "comments": self.comments,
            "answer_ids": self.answer_ids,
        }


def normalise(question: str) -> str:
    return re.sub(r"\s+", " ", question).strip().rstrip("?!.").strip().lower()


def group_outcomes(
    outcomes: Sequence[Outcome], embeddings: Embeddings, similarity: float = SIMILARITY
) -> list[Group]:
    """Unwanted outcomes grouped by meaning, most frequent first."""
    unwanted = [o for o in outcomes if o.unwanted and o.question.strip()]
    if not unwanted:
        return []
    by_wording: dict[str, list[Outcome]] = {}
    for outcome in unwanted:
        by_wording.setdefault(normalise(outcome.question), []).append(outcome)
    wordings = sorted(by_wording, key=lambda w: len(by_wording[w]), reverse=True)
    vectors = np.asarray(embeddings.embed_documents(wordings), dtype=np.float32)

    groups: list[Group] = []
    centroids: list[np.ndarray] = []
    for wording, vector in zip(wordings, vectors, strict=True):
        chosen = None
        for n, centroid in enumerate(centroids):
            if float(vector @ centroid) / (float(np.linalg.norm(centroid)) or 1.0) >= similarity:
                chosen = n
                break
        members = by_wording[wording]
        if chosen is None:
            groups.append(Group(question=members[-1].question.strip()))
            centroids.append(vector.copy())
            chosen = len(groups) - 1
        else:
            centroids[chosen] = centroids[chosen] + vector
        for outcome in members:
            groups[chosen].add(outcome, outcome.question.strip())
    for group in groups:  # name each group by its most frequent wording
        group.question = group.variants.most_common(1)[0][0]
    return sorted(groups, key=lambda g: (g.count, g.last_seen), reverse=True)


_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float) -> float:
    """``7d``, ``12h``, ``30m``, ``2w`` before ``now``, or an ISO date/time: epoch seconds."""
    value = text.strip().lower()
    if match := _SPAN.match(value):
        return now - int(match.group(1)) * _SECONDS[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequest(
            f"since={text!r}: use a span such as 7d, 12h or 30m, or a date such as 2026-11-01"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
