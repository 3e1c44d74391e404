"""The offline provider: answers with the passages' own words, no language model.

1. It reads the top three retrieved passages (skipping release notes unless the question asks
   when something changed; every retrieved passage for "how do I" and "what is <term>")
   and the passages the answerer read around them (``reads_around``: the neighbours of the top
   three in their documents), cut into units (``citewise.answer.units``): prose sentences,
   list items, table rows and code blocks, hard-wrapped lines joined.
2. Units that cannot answer anything are set aside (``citewise.answer.question``): signposts
   and navigation ("in the next section", "see below", "read more"), heading-like fragments,
   reference entries, changelog lines, diagrams, and lines that only present what follows.
3. Each remaining unit is scored: the share of the question's content words it holds (each
   word weighted by its rarity among the units read), plus its passage's similarity (a unit is
   only as good as the passage it stands in; a passage read around a retrieved one counts
   halfway to its document's best), plus a bonus when it carries what the question asks for:
   a number for "how many / when / what year", a defining sentence for "what is X" (double
   when the sentence opens with it; when one is read, units that only mention X lose the
   bonus), a specific name for "which ...", a sentence that settles a yes/no question, an API
   name for "how do I". The 16 best by these signals then add their embedding similarity to
   the question (the model is the costliest step, so it sees only those).
4. The answer takes its shape from the question. "How do I ..." gets the best unit with the
   steps or code that follow it (or the whole list it belongs to; or, when it stands alone,
   the next sentences of its passage or of the next one that name what to use), up to about
   90 words, under a line naming where it comes from. Any other question gets the best unit,
   and the runner-up when it scores within 20% (the fact asked for often sits in the next
   sentence or the next paragraph); a unit that ends in a colon brings the list or code it
   introduces, and one opening with "It" or "This" the sentence before it.

Each unit is followed by the marker of the passage it came from. The weights were chosen on
XQuAD and on our FastAPI documentation questions (bench/results/eval.json, docs/benchmarks.md).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
from langchain_core.embeddings import Embeddings

from citewise import stored_chunk
from citewise.answer import question as asked
from citewise.answer.generators.base import REFUSAL, Turn, condense_heuristic
from citewise.answer.units import Unit, units
from citewise.search.lexical import tokenize
from citewise.search.store import Hit
from citewise.threads import run_blocking

LEXICAL_WEIGHT = 1.0  # share of question words matched, relative to cosine similarity
PASSAGE_WEIGHT = 1.0  # the containing passage's cosine similarity to the question
WANTED_BONUS = 0.25  # a unit holding what the question asks for (a number, a definition)
RUNNER_UP_RATIO = 0.80  # a second unit is added when it scores at least this share
MIN_WORDS = 3
INSTRUCTION_WORDS = 7  # a colon-ended sentence this long stands alone
BLOCK_WORDS = 90  # how much of a procedure or a list an answer quotes, at most
STEPS = 2  # sentences naming what to use that a how-to answer adds after its best one
TERM_WORDS = 3  # a "what is X" question whose X is this short asks about a term
COMPARED = 16  # units compared with the question through the embedding model, at most
VERSION = 4  # of the rules above: part of every cached answer's key


@dataclass(frozen=True)
class _Candidate:
    n: int
    unit: Unit
    score: float
    order: int  # position among all units of the passages, for "what follows"


class ExtractiveGenerator:
    """Answers from the retrieved text itself; needs the embedding model, nothing else."""

    def __init__(self, embeddings: Embeddings, passages: int = 3, max_sentences: int = 2) -> None:
        self._embeddings = embeddings
        self._passages = passages
        self._max_sentences = max_sentences
        self.reads_around = passages  # the answerer adds these passages' neighbours
        # Part of every cached answer's key: changing a rule here retires old answers.
        self.cache_identity = (
            f"extractive/v{VERSION}/{LEXICAL_WEIGHT}/{PASSAGE_WEIGHT}/{WANTED_BONUS}/"
            f"{RUNNER_UP_RATIO}/{MIN_WORDS}/{INSTRUCTION_WORDS}/{BLOCK_WORDS}/{STEPS}/"
            f"{TERM_WORDS}/{COMPARED}/{passages}/{max_sentences}"
        )

    async def condense(self, question: str, history: Sequence[Turn]) -> str:
        return condense_heuristic(question, history)

    async def stream(self, question: str, sources: Sequence[Hit]) -> AsyncIterator[str]:
        answer = await run_blocking(self.compose, question, sources)
        for piece in re.findall(r"\S+\s*", answer):
            yield piece

    def compose(self, question: str, sources: Sequence[Hit]) -> str:
        kind = asked.kind_of(question)
        everything, ranked = self._ranked(question, kind, sources)
        if not ranked:
            return REFUSAL
        best = ranked[0]
        if kind is asked.Kind.PROCEDURE:
            asked_words = question_words(question)
            chosen = _block_around(best, everything)
            if len(chosen) == 1:
                chosen += _steps_after(best, everything, sources, asked_words)
            named = _naming_the_tool(chosen, ranked, sources, everything, asked_words)
            if len(chosen) > 1 or named:
                answer = _where(sources[best.n - 1]) + "\n" + _render(chosen)
                if named:  # after a list or code, on a line of its own
                    answer += ("\n" if "\n" in _render(chosen) else " ") + _render(named)
                return answer
            return _render(chosen)
        chosen = [best]
        for runner in ranked[1 : self._max_sentences]:
            # Limiting it to the best one's paragraph cost 0.08 of key phrases on the FastAPI
            # questions: the value asked for often stands a paragraph further on.
            close = runner.score >= RUNNER_UP_RATIO * best.score
            if close and runner.unit.words != best.unit.words:
                chosen.append(runner)
        chosen = _with_antecedents(chosen, everything)
        chosen = sorted(chosen, key=lambda c: c.order)  # read in document order
        return _render(_with_what_they_introduce(chosen, everything))

    def _ranked(
        self, question: str, kind: asked.Kind, sources: Sequence[Hit]
    ) -> tuple[list[_Candidate], list[_Candidate]]:
        """Every unit of the top passages in reading order, and those that may answer, best
        first."""
        read = _passages_read(question, kind, sources, self._passages)
        everything = [
            _Candidate(n, unit, 0.0, order)
            for order, (n, unit) in enumerate(
                (n, unit)
                for n, hit in enumerate(sources, start=1)
                if n in read or not hit.retrieved
                for unit in units(hit.text)
            )
        ]
        changelog = [_from_changelog(hit) for hit in sources]
        eligible = [
            c
            for c in everything
            if asked.may_answer(c.unit, kind, MIN_WORDS) and not _dangling(c, everything)
        ]
        if not eligible:
            return everything, []
        question_terms = set(tokenize([question])[0])
        standing = _standing(sources, self._passages)
        subject = asked.subject_of(question)
        asked_words = question_words(question)
        terms_of = [set(t) for t in tokenize([c.unit.words for c in eligible])]
        weights = _rarity(question_terms, terms_of)
        salient = (
            _salient_api(sources, {c.n for c in everything}, asked_words)
            if kind is asked.Kind.PROCEDURE
            else set()
        )
        wanted_of = [
            asked.carries_wanted(c.unit.words, kind, subject, asked_words) for c in eligible
        ]
        # When a unit read says what the subject is, a "what is" question is answered by it:
        # the others merely mention the subject ("a path operation for /openapi.json").
        defined = kind is asked.Kind.DEFINITION and max(wanted_of) > 0
        scored = []
        for candidate, terms, wanted in zip(eligible, terms_of, wanted_of, strict=True):
            if defined and wanted == 0:
                wanted = -1.0
            if kind is asked.Kind.PROCEDURE:
                if salient & asked.api_names(candidate.unit.words, asked_words):
                    wanted = 2.0
                elif _leads_to_steps(candidate, everything):
                    wanted = 1.0
            if changelog[candidate.n - 1] and not asked.asks_about_changes(kind):
                wanted = -1.0  # a change described, not the thing
            score = (
                LEXICAL_WEIGHT * _overlap(weights, terms)
                + PASSAGE_WEIGHT * standing[candidate.n - 1]
                + WANTED_BONUS * wanted
            )
            scored.append(_Candidate(candidate.n, candidate.unit, score, candidate.order))
        return everything, self._with_similarity(question, scored)

    def _with_similarity(self, question: str, scored: list[_Candidate]) -> list[_Candidate]:
        """``scored`` with each unit's embedding similarity to the question added, best first.

        Only the ``COMPARED`` best by the other signals go through the model: it is the
        costliest step of an answer (a how-to reads ~30 units, ~20 ms of model time per 8 on
        these cores), and on our sets a unit ranked lower never won. The rest get the lowest
        similarity among those compared, so they stay comparable but do not climb over them.
        """
        compared = sorted(range(len(scored)), key=lambda i: scored[i].score, reverse=True)
        compared = compared[:COMPARED]
        vectors = np.asarray(
            self._embeddings.embed_documents([scored[i].unit.words for i in compared])
        )
        similarities = dict(
            zip(compared, vectors @ np.asarray(self._embeddings.embed_query(question)), strict=True)
        )
        lowest = min(similarities.values())
        return sorted(
            (
                _Candidate(c.n, c.unit, c.score + float(similarities.get(i, lowest)), c.order)
                for i, c in enumerate(scored)
            ),
            key=lambda c: c.score,
            reverse=True,
        )


def comparable_units(passage: str) -> list[str]:
    """The words of every unit of ``passage`` that some question may compare with itself
    through the model (``_with_similarity``): those that may answer a how-to, the widest
    kind. An ingest embeds them ahead into the embedding cache
    (``CITEWISE_INGEST_ANSWER_UNITS``), so that no question waits for the model to read them.
    """
    return [u.words for u in units(passage) if asked.may_answer(u, asked.Kind.PROCEDURE, MIN_WORDS)]


def _passages_read(
    question: str, kind: asked.Kind, sources: Sequence[Hit], passages: int
) -> set[int]:
    """The retrieved passages whose units may answer (those read around them always may).

    How-to answers are spread further: the steps sit under their own heading, often not the
    one the question's words matched best; and a term is defined where it is introduced,
    rarely in the passage most like "What is X?": both read every retrieved passage. Other
    questions read the best few, skipping changelog passages unless they ask when something
    changed: release notes repeat a feature's words ("install with pip install
    "fastapi[standard]"") without being the page that explains it.
    """
    retrieved = [n for n, hit in enumerate(sources, start=1) if hit.retrieved]
    if kind is asked.Kind.PROCEDURE or _asks_for_a_term(question, kind):
        return set(retrieved)
    if not asked.asks_about_changes(kind):
        lasting = [n for n in retrieved if not _from_changelog(sources[n - 1])]
        if lasting:
            return set(lasting[:passages])
    return set(retrieved[:passages])


def _asks_for_a_term(question: str, kind: asked.Kind) -> bool:
    """A "what is X" question about a term ("What is OpenAPI?", "What is dependency
    injection?"), not one whose "X" is a whole clause ("What was the Black Death originally
    blamed on?"): the latter asks for a fact, found where the question's words are."""
    subject = asked.subject_of(question) if kind is asked.Kind.DEFINITION else None
    return subject is not None and len(subject.split()) <= TERM_WORDS


def _naming_the_tool(
    chosen: list[_Candidate],
    ranked: list[_Candidate],
    sources: Sequence[Hit],
    everything: list[_Candidate],
    asked_words: frozenset[str],
) -> list[_Candidate]:
    """When a how-to answer does not name the API its sections are headed by, the best unit
    that does, if it scores within the runner-up ratio of the best: "To return HTTP responses
    with errors to the client you use HTTPException" after the example of a 404."""
    salient = _salient_api(sources, {c.n for c in everything}, asked_words)
    if not salient or any(salient & asked.api_names(c.unit.words, asked_words) for c in chosen):
        return []
    best = ranked[0]
    for candidate in ranked[1:]:
        if candidate.score < RUNNER_UP_RATIO * best.score:
            break
        if candidate.unit.kind == "sentence" and salient & asked.api_names(
            candidate.unit.words, asked_words
        ):
            return [candidate]
    return []


def _salient_api(sources: Sequence[Hit], read: set[int], asked_words: frozenset[str]) -> set[str]:
    """The API names the section headings of the passages read give: documentation puts the
    thing a how-to uses in the heading of the section that uses it ("Use HTTPException",
    "Using BackgroundTasks", "Use the response_model_exclude_unset parameter")."""
    names: set[str] = set()
    for n in read:
        heading = str(sources[n - 1].metadata.get(stored_chunk.HEADING, ""))
        title = str(sources[n - 1].metadata.get(stored_chunk.TITLE, ""))
        sections = [part.strip() for part in heading.split(" > ") if part.strip() != title]
        for section in sections:
            names |= asked.api_names(section, asked_words)
    return names


def _from_changelog(hit: Hit) -> bool:
    return asked.from_changelog(
        str(hit.metadata.get(stored_chunk.TITLE, "")),
        str(hit.metadata.get(stored_chunk.HEADING, "")),
    )


def question_words(question: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", question.lower()))


def _standing(sources: Sequence[Hit], passages: int) -> list[float]:
    """How relevant each source's passage is: its similarity to the question, or for a passage
    read around a retrieved one, halfway between its own and the best of its document's
    retrieved passages: it continues them ("First, import BackgroundTasks" after the section's
    introduction shares few words with a question about sending e-mail later), but it may be
    the start of another section (counted as the best, "Adding ASGI middlewares" answered
    "How do I enable CORS?")."""
    best_of: dict[str, float] = {}
    for hit in sources[:passages]:
        source = str(hit.metadata.get(stored_chunk.SOURCE, ""))
        best_of[source] = max(best_of.get(source, -1.0), hit.similarity)
    return [
        hit.similarity
        if hit.retrieved
        else (hit.similarity + best_of.get(str(hit.metadata.get(stored_chunk.SOURCE, "")), 0.0)) / 2
        for hit in sources
    ]


def _same_passage_after(best: _Candidate, everything: list[_Candidate]) -> list[_Candidate]:
    return [
        c for c in everything[best.order + 1 :] if c.n == best.n and not asked.is_markup(c.unit)
    ]


def _rarity(question_terms: set[str], terms_of: list[set[str]]) -> dict[str, float]:
    """Each question word's weight: its inverse document frequency among the units read, so
    a word every unit holds ("fastapi" in FastAPI's documentation) counts for little and the
    word that tells the right unit apart ("dotenv") for much."""
    count = len(terms_of)
    return {
        term: math.log((count + 1) / (0.5 + sum(1 for terms in terms_of if _holds(terms, term))))
        for term in question_terms
    }


def _holds(terms: set[str], term: str) -> bool:
    """Whether a unit holds a word, also at the start of a longer one: documentation names
    things in compounds ("CORS" in "CORSMiddleware")."""
    return term in terms or (len(term) >= 3 and any(t.startswith(term) for t in terms))


def _overlap(weights: dict[str, float], terms: set[str]) -> float:
    """The share of the question's words the unit holds, each word by its weight."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return sum(w for term, w in weights.items() if _holds(terms, term)) / total


_ANAPHORA = re.compile(r"^(?:It|Its|This|That|These|Those|They|Their|Such|He|She|Here)\b")


def _with_antecedents(chosen: list[_Candidate], everything: list[_Candidate]) -> list[_Candidate]:
    """A sentence opening with "It", "This" or "They" says little without the one before it
    ("Another example is 201, Created. It is used after creating a record."): that one joins."""
    result = list(chosen)
    for candidate in chosen:
        if candidate.unit.kind != "sentence" or not _ANAPHORA.match(candidate.unit.text):
            continue
        before = everything[candidate.order - 1] if candidate.order > 0 else None
        if (
            before is not None
            and before.n == candidate.n
            and before.unit.block == candidate.unit.block
            and all(c.order != before.order for c in result)
        ):
            result.append(before)
    return result


# A line that only presents what follows: "Here's a diagram of ...:", "... like this:".
_PRESENTS = re.compile(
    r"^\s*(?:here(?:['\u2019]s|\s+is|\s+are)|the\s+following)\b"
    r"|\b(?:like\s+this|as\s+follows|for\s+example|for\s+instance|something\s+like|"
    r"look(?:s)?\s+like|such\s+as|the\s+following|below)\s*:$",
    re.IGNORECASE,
)


def _dangling(candidate: _Candidate, everything: list[_Candidate]) -> bool:
    """A short sentence ending in a colon whose list, table or code is not in the passage
    ("For example:"). A longer one is an instruction in its own right ("set convert_underscores
    of Header to False:"): documentation often keeps the code it introduces in another file."""
    text = candidate.unit.text
    if not text.endswith(":"):
        return False
    if len(text.split()) >= INSTRUCTION_WORDS and not _PRESENTS.search(text):
        return False
    following = _same_passage_after(candidate, everything)
    return not following or following[0].unit.kind == "sentence"


def _leads_to_steps(candidate: _Candidate, everything: list[_Candidate]) -> bool:
    """A sentence followed by a list or code: how documentation introduces steps."""
    if candidate.unit.kind != "sentence":
        return False
    following = _same_passage_after(candidate, everything)
    return (
        bool(following)
        and following[0].unit.kind in ("item", "code")
        and (candidate.unit.text.endswith(":") or following[0].unit.block != candidate.unit.block)
    )


def _block_around(best: _Candidate, everything: list[_Candidate]) -> list[_Candidate]:
    """A procedure's answer: the list the best unit is an item of (with the sentence that
    introduces it), or the best unit with the list or code right after it."""
    passage = [c for c in everything if c.n == best.n and not asked.is_markup(c.unit)]
    if best.unit.kind in ("item", "code"):
        # the list's other items, but not its changelog lines or references
        block = [
            c
            for c in passage
            if c.unit.block == best.unit.block
            and (c is best or asked.may_answer(c.unit, asked.Kind.PROCEDURE, 1))
        ]
        before = [c for c in passage if c.unit.block == best.unit.block - 1]
        intro = before[-1:] if before and before[-1].unit.text.endswith(":") else []
        if best.unit.kind == "code" and not intro:
            return _capped([best])
        return _capped(intro + block)
    chosen = [best]
    following = _same_passage_after(best, everything)
    last_of_block = not following or following[0].unit.block != best.unit.block
    if following and (best.unit.text.endswith(":") or last_of_block):
        nxt = following[0].unit
        if nxt.kind in ("item", "code", "row"):
            chosen += [c for c in following if c.unit.block == nxt.block]
    return _capped(chosen)


def _steps_after(
    best: _Candidate,
    everything: list[_Candidate],
    sources: Sequence[Hit],
    asked_words: frozenset[str],
) -> list[_Candidate]:
    """What a how-to answer adds after its best sentence when that sentence stands alone: the
    next sentences of its passage, or of the passage that follows it in the document, that
    name the thing to use ("First, import BackgroundTasks ..."), up to ``STEPS`` of them."""
    following = _document_order_after(best, everything, sources)
    steps = [
        c
        for c in following
        if c.unit.kind == "sentence"
        and asked.may_answer(c.unit, asked.Kind.PROCEDURE, MIN_WORDS)
        and asked.carries_wanted(c.unit.words, asked.Kind.PROCEDURE, None, asked_words) > 0
    ]
    return _capped([best, *steps[:STEPS]])[1:]


def _document_order_after(
    best: _Candidate, everything: list[_Candidate], sources: Sequence[Hit]
) -> list[_Candidate]:
    """The units after ``best`` in its passage, then those of the passage that comes next in
    the same document, when it is among the sources."""
    hit = sources[best.n - 1]
    source = hit.metadata.get(stored_chunk.SOURCE)
    at = hit.metadata.get(stored_chunk.CHUNK_INDEX)
    following = _same_passage_after(best, everything)
    if isinstance(at, int):
        nxt = next(
            (
                n
                for n, h in enumerate(sources, start=1)
                if h.metadata.get(stored_chunk.SOURCE) == source
                and h.metadata.get(stored_chunk.CHUNK_INDEX) == at + 1
            ),
            None,
        )
        if nxt is not None:
            following += [c for c in everything if c.n == nxt and not asked.is_markup(c.unit)]
    return following


def _with_what_they_introduce(
    chosen: list[_Candidate], everything: list[_Candidate]
) -> list[_Candidate]:
    """Each chosen unit ending in a colon followed by the list, table or code it introduces
    ("It uses a spooled file:" and the item that says what that is), in document order."""
    result: list[_Candidate] = []
    for candidate in chosen:
        more = _introduced(candidate, everything) if candidate.unit.text.endswith(":") else []
        for unit in more or [candidate]:
            if all(unit.order != kept.order for kept in result):
                result.append(unit)
    return sorted(result, key=lambda c: c.order)


def _introduced(intro: _Candidate, everything: list[_Candidate]) -> list[_Candidate]:
    """A unit ending in a colon with the list, table or code it introduces (or alone)."""
    following = _same_passage_after(intro, everything)
    if not following or following[0].unit.kind == "sentence":
        return [intro]
    return _capped([intro] + [c for c in following if c.unit.block == following[0].unit.block])


def _capped(chosen: list[_Candidate]) -> list[_Candidate]:
    kept: list[_Candidate] = []
    words = 0
    for candidate in chosen:
        size = len(candidate.unit.words.split())
        if kept and words + size > BLOCK_WORDS:
            break
        kept.append(candidate)
        words += size
    return kept


def _render(chosen: list[_Candidate]) -> str:
    """Units in order: sentences run on, list items and rows one per line, code as it is;
    each followed by its passage's marker (a list or code block once, at its end)."""
    out = ""
    blocks = [(c.n, c.unit.block) for c in chosen if c.unit.kind in ("item", "row")]
    for index, candidate in enumerate(chosen):
        unit, n = candidate.unit, candidate.n
        following = chosen[index + 1] if index + 1 < len(chosen) else None
        ends_block = following is None or (following.unit.block, following.n) != (unit.block, n)
        alone = unit.kind in ("item", "row") and blocks.count((n, unit.block)) == 1
        if unit.kind == "sentence" or alone:  # one item of a list reads as a sentence
            words = unit.words
            if words.endswith(":") and (following is None or following.unit.kind == "sentence"):
                words = words[:-1].rstrip() + "."  # what it introduced is not shown
            out += (" " if out and not out.endswith("\n") else "") + _with_marker(words, n)
            continue
        out = out.rstrip(" ")
        if out and not out.endswith("\n"):
            out += "\n"
        text = unit.text if unit.kind == "code" else unit.words
        prefix = "- " if unit.kind == "item" else ""
        out += prefix + (_with_marker(text, n) if ends_block else text) + "\n"
    return out.strip()


def _where(hit: Hit) -> str:
    """Where a quoted block comes from, as a reader would say it: title › heading."""
    title = str(hit.metadata.get(stored_chunk.TITLE, "")).strip()
    heading = str(hit.metadata.get(stored_chunk.HEADING, "")).split(" > ")[-1].strip()
    parts = [p for p in dict.fromkeys([title, heading]) if p]
    return f"From {' › '.join(parts)}:" if parts else "From the documentation:"


def _without_decoration(sentence: str) -> str:
    """The sentence without the symbols after its full stop ("... Requests. 🚀")."""
    end = len(sentence)
    while end and (
        sentence[end - 1].isspace() or unicodedata.category(sentence[end - 1]) in _SYMBOLS
    ):
        end -= 1
    if end < len(sentence) and end and sentence[end - 1] in ".!?":
        return sentence[:end]
    return sentence


_SYMBOLS = {"So", "Sk", "Mn", "Cf"}  # emoji, their modifiers and variation selectors


def _with_marker(sentence: str, n: int) -> str:
    """ "Refunds take 5 days." -> "Refunds take 5 days [1]." """
    # A decoration after the full stop ("... Requests. 🚀") would hold the marker apart from
    # the sentence it cites; the quote in the citation keeps it.
    sentence = _without_decoration(sentence.strip())
    if sentence.endswith(("...", "\u2026")):  # an ellipsis keeps its three dots
        return f"{sentence} [{n}]"
    if sentence and sentence[-1] in ".!?" and "\n" not in sentence:
        return f"{sentence[:-1]} [{n}]{sentence[-1]}"
    if "\n" in sentence:  # code: the marker on a line of its own would read as code
        return f"{sentence}\n[{n}]"
    return f"{sentence} [{n}]"
