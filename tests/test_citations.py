"""Citation markers, verification and deep links (``answer.citations``), without a model."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from citewise.answer.citations import (
    MarkerFilter,
    claims,
    deep_link,
    sentences,
    strip_invalid_markers,
    verify,
)
from citewise.search.store import Hit

REFUNDS = (
    "Annual plans are refunded pro rata for the unused months. "
    "Refunds are issued within 14 days of the request. "
    "They go back to the original payment method."
)
SEATS = "Each seat costs 8 euros per month. Seats are added when you invite a user."


def hit(text: str, source: str = "billing/refunds.md", **metadata: object) -> Hit:
    return Hit(
        chunk_id=f"id-{source}",
        text=text,
        metadata={"source": source, "title": "Refunds", "heading": "Billing > Refunds", **metadata},
        score=0.03,
        similarity=0.6,
    )


# --- sentences ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "  First one.  Second one? Third!\nFourth line without a stop\n\n  Fifth. ",
            ["First one.", "Second one?", "Third!", "Fourth line without a stop", "Fifth."],
            id="stops-and-line-breaks",
        ),
        pytest.param(
            "Refunds take 14 days [1]. Annual plans are pro rata. [2][3] Seats cost 8 euros [1].",
            [
                "Refunds take 14 days [1].",
                "Annual plans are pro rata. [2][3]",
                "Seats cost 8 euros [1].",
            ],
            id="citation-markers-stay-with-their-sentence",
        ),
        pytest.param(
            "Invitations:\n- An invitation is valid for 7 days.\n* Resend it from Users.\n"
            "2. Admins approve.\n3) Owners sign.\n\u2022 Bullets too.\n-5 degrees is cold.",
            [
                "Invitations:",
                "An invitation is valid for 7 days.",
                "Resend it from Users.",
                "Admins approve.",
                "Owners sign.",
                "Bullets too.",
                "-5 degrees is cold.",
            ],
            id="list-item-markers-are-not-text",
        ),
    ],
)
def test_sentences_and_their_offsets(text: str, expected: list[str]) -> None:
    spans = sentences(text)
    assert [s.text for s in spans] == expected
    assert all(text[s.start : s.end] == s.text for s in spans)  # offsets point back into it


def test_no_split_before_lower_case_and_nothing_for_blank_text() -> None:
    assert [s.text for s in sentences("Use e.g. the web app. Then sync.")] == [
        "Use e.g. the web app.",
        "Then sync.",
    ]
    assert sentences("") == [] and sentences(" \n\t ") == []


def test_claims_are_marker_free_sentences_with_their_source_numbers() -> None:
    answer = "Refunds take 14 days [1][2][1]. No marker here. Seats cost 8 euros [3]."
    assert list(claims(answer)) == [
        ("Refunds take 14 days.", [1, 2]),
        ("Seats cost 8 euros.", [3]),
    ]


def test_a_removed_marker_leaves_no_gap_but_a_name_keeps_its_leading_dot() -> None:
    answer = "Use decorators and .include_router() to add routes [9]. It works [1]."
    assert strip_invalid_markers(answer, 3) == (
        "Use decorators and .include_router() to add routes. It works [1]."
    )
    assert list(claims("Call the method .openapi() first [1].")) == [
        ("Call the method .openapi() first.", [1])
    ]


def test_a_quoted_sentence_ends_at_its_closing_quote_and_a_marker_never_starts_one() -> None:
    answer = 'He told the court, "I am here to submit." [1] The court had no bearing on it [2].'
    assert list(claims(answer)) == [
        ('He told the court, "I am here to submit."', [1]),
        ("The court had no bearing on it.", [2]),
    ]
    # A marker and a full stop end a claim even before a lower-case name.
    assert list(claims("Restrictive by default [2]. allow_origins - a list of origins [8].")) == [
        ("Restrictive by default.", [2]),
        ("allow_origins - a list of origins.", [8]),
    ]
    # Before, "[1]." alone was a claim with no words: flagged unsupported in 0.8% of XQuAD.
    assert list(claims('The Shah said: "Of course it is going to rise... [1]')) == [
        ('The Shah said: "Of course it is going to rise...', [1])
    ]


# --- MarkerFilter ---------------------------------------------------------------------------


def _filtered(pieces: list[str], count: int) -> tuple[list[str], str]:
    markers = MarkerFilter(count)
    out = [markers.feed(p) for p in pieces]
    return out, "".join(out) + markers.flush()


def test_marker_split_across_pieces_is_held_back_then_released() -> None:
    out, text = _filtered(["Refunds take 14 days [", "1", "]. Seats [2", "] cost."], 2)
    assert out[0] == "Refunds take 14 days "  # the "[" waits: it may start a marker
    assert out[1] == ""
    assert text == "Refunds take 14 days [1]. Seats [2] cost."


def test_invalid_markers_are_removed_even_when_split() -> None:
    _, text = _filtered(["Fact one [", "9", "]. Fact two [0]. Fact three [1", "2]."], 3)
    assert "[9]" not in text and "[0]" not in text and "[12]" not in text
    assert strip_invalid_markers(text, 3) == "Fact one. Fact two. Fact three."


def test_two_digit_marker_split_inside_its_number_is_kept_when_valid() -> None:
    _, text = _filtered(["See [1", "2] and [", "3]"], 12)
    assert text == "See [12] and [3]"


def test_brackets_that_are_not_markers_pass_through() -> None:
    out, text = _filtered(["an array [a, b] and [", "x] and a trailing ["], 3)
    assert out[0] == "an array [a, b] and "
    assert text == "an array [a, b] and [x] and a trailing ["


@pytest.mark.parametrize("count", [0, 1, 2])
def test_every_way_of_splitting_a_stream_gives_the_same_text(count: int) -> None:
    answer = "A [1]. B [2][3]. C [10] [x] D ["
    whole = _filtered([answer], count)[1]
    for i in range(len(answer) + 1):
        for j in range(i, len(answer) + 1):
            _, text = _filtered([answer[:i], answer[i:j], answer[j:]], count)
            assert text == whole, (i, j)
    kept = {int(n) for n in re.findall(r"\[(\d+)\]", whole)}
    assert kept == {n for n in (1, 2, 3, 10) if n <= count}
    assert whole.endswith("[x] D [")


# --- verify -----------------------------------------------------------------------------------


def test_verify_keeps_a_supported_claim_and_quotes_its_sentence() -> None:
    sources = [hit(REFUNDS)]
    [citation] = verify("Refunds are issued within 14 days [1].", sources, {}, "default")
    assert citation.supported and citation.unsupported_claims == []
    assert citation.quote == "Refunds are issued within 14 days of the request."
    assert REFUNDS[citation.start : citation.end] == citation.quote
    assert citation.source == "billing/refunds.md" and citation.chunk_id == "id-billing/refunds.md"


def test_verify_flags_the_unsupported_sentence_only() -> None:
    sources = [hit(REFUNDS), hit(SEATS, source="billing/seats.md")]
    answer = (
        "Refunds are issued within 14 days [1]. "
        "Refunds are paid out in gold coins by carrier pigeon [1]. "
        "Each seat costs 8 euros per month [2]."
    )
    first, second = verify(answer, sources, {}, "default")
    assert (first.n, second.n) == (1, 2)
    assert not first.supported
    assert first.unsupported_claims == ["Refunds are paid out in gold coins by carrier pigeon."]
    assert second.supported and second.unsupported_claims == []
    assert second.quote == "Each seat costs 8 euros per month."


def test_the_quote_is_the_supporting_sentence_even_when_a_bad_claim_comes_first() -> None:
    sources = [hit(REFUNDS)]
    answer = "Dragons guard the billing office [1]. Refunds are issued within 14 days [1]."
    [citation] = verify(answer, sources, {}, "default")
    assert not citation.supported
    assert citation.quote == "Refunds are issued within 14 days of the request."
    assert REFUNDS[citation.start : citation.end] == citation.quote


def test_verify_ignores_markers_that_name_no_source() -> None:
    citations = verify("Refunds are issued within 14 days [1][7].", [hit(REFUNDS)], {}, "kb")
    assert [c.n for c in citations] == [1]


# --- deep links -------------------------------------------------------------------------------


def test_pdf_passage_links_to_its_page() -> None:
    metadata = {"source": "billing/refund-policy.pdf", "page": 2, "anchor": "ignored"}
    assert deep_link(metadata, "Any quote.", "") == "billing/refund-policy.pdf#page=2"


def test_heading_anchor_is_used_when_there_is_no_page() -> None:
    metadata = {"source": "billing/plans.html", "anchor": "annual-plans"}
    assert deep_link(metadata, "Any quote.", "") == "billing/plans.html#annual-plans"
    odd = {"source": "a.md", "anchor": "pricing & plans"}
    assert deep_link(odd, "q", "") == "a.md#pricing%20%26%20plans"


def test_text_fragment_quotes_the_first_words_of_the_quote() -> None:
    metadata = {"source": "account/handbook.docx"}
    quote = "Refunds, once approved, are issued within 14 days of the request."
    url = deep_link(metadata, quote, "")
    target, _, fragment = url.partition("#:~:text=")
    assert target == "account/handbook.docx"
    assert unquote(fragment) == "Refunds, once approved, are issued within 14 days"
    # Characters with a meaning in text directives are percent-encoded.
    assert "," not in fragment and " " not in fragment and "&" not in fragment


def test_text_fragment_encodes_dashes() -> None:
    # A leading or trailing "-" in a text directive marks a prefix or suffix, so a quote from
    # a bullet list ("- An invitation ...") must not produce one.
    url = deep_link({"source": "handbook.docx"}, "- An invitation is valid for 7-day periods.", "")
    fragment = url.partition("#:~:text=")[2]
    assert "-" not in fragment
    assert unquote(fragment) == "- An invitation is valid for 7-day periods."


def test_empty_quote_links_to_the_document() -> None:
    assert deep_link({"source": "a/b.md"}, "   ", "") == "a/b.md"


@pytest.mark.parametrize(
    "base",
    ["https://help.example.com/docs", "https://help.example.com/docs/"],
)
def test_base_url_join(base: str) -> None:
    metadata = {"source": "billing/plans and pricing.html", "anchor": "annual"}
    assert (
        deep_link(metadata, "q", base)
        == "https://help.example.com/docs/billing/plans%20and%20pricing.html#annual"
    )


def test_citations_carry_links_under_the_knowledge_base_url() -> None:
    sources = [hit(REFUNDS, source="billing/refund-policy.pdf", page=3)]
    base_urls = {"help": "https://help.example.com/", "other": "https://elsewhere.example/"}
    [citation] = verify("Refunds are issued within 14 days [1].", sources, base_urls, "help")
    assert citation.url == "https://help.example.com/billing/refund-policy.pdf#page=3"
    assert citation.page == 3
