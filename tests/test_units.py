"""Text units for extractive answers, and the rules that say which can answer a question."""

from __future__ import annotations

import pytest

from citewise.answer import question as asked
from citewise.answer.generators.extractive import question_words
from citewise.answer.units import Unit, units

WRAPPED = (
    "A comment is required when rejecting, and it must be at least 10\n"
    "characters long. The approver sees it (e.g. The Finance Team) in the log.\n"
    "See Fig. 2 for the flow, which J. Smith drew.\n"
    "\n"
    "To reject a report:\n"
    "\n"
    "- Open the report.\n"
    "- Choose Reject and write\n"
    "  the reason.\n"
    "\n"
    'client.post("/reports/7/reject", json={"comment": comment})\n'
    "\n"
    "| status | meaning |\n"
    "| 201 | created |"
)


def kinds(text: str) -> list[tuple[str, str]]:
    return [(u.kind, u.words) for u in units(text)]


def test_hard_wrapped_prose_is_joined_and_abbreviations_do_not_end_sentences() -> None:
    assert kinds(WRAPPED)[:3] == [
        (
            "sentence",
            "A comment is required when rejecting, and it must be at least 10 characters long.",
        ),
        ("sentence", "The approver sees it (e.g. The Finance Team) in the log."),
        ("sentence", "See Fig. 2 for the flow, which J. Smith drew."),
    ]


def test_list_items_code_and_table_rows_stay_units_of_their_own() -> None:
    assert kinds(WRAPPED)[3:] == [
        ("sentence", "To reject a report:"),
        ("item", "Open the report."),
        ("item", "Choose Reject and write the reason."),
        ("code", 'client.post("/reports/7/reject", json={"comment": comment})'),
        ("row", "| status | meaning |"),
        ("row", "| 201 | created |"),
    ]


def test_every_unit_is_the_exact_text_at_its_offsets_and_blocks_are_numbered() -> None:
    found = units(WRAPPED)
    assert all(WRAPPED[u.start : u.end] == u.text for u in found)
    assert [u.block for u in found] == [0, 0, 0, 1, 2, 2, 3, 4, 4]


def test_pdf_lines_ending_mid_sentence_join_and_a_sentence_end_still_splits() -> None:
    page = "The estimated basic reproduction number\nwas 2.2 in the early phase.\nIt fell later."
    assert kinds(page) == [
        ("sentence", "The estimated basic reproduction number was 2.2 in the early phase."),
        ("sentence", "It fell later."),
    ]


def test_a_list_right_under_its_introducing_line_is_still_a_list() -> None:
    page = "Refunds depend on the plan\nyou bought:\n- Monthly: none.\n- Annual: within\n30 days."
    assert kinds(page) == [
        ("sentence", "Refunds depend on the plan you bought:"),
        ("item", "Monthly: none."),
        ("item", "Annual: within 30 days."),
    ]


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How do I enable CORS?", asked.Kind.PROCEDURE),
        ("how can i upload a file", asked.Kind.PROCEDURE),
        ("What are the steps to deploy?", asked.Kind.PROCEDURE),
        ("How many workers does it start?", asked.Kind.QUANTITY),
        ("What status code is returned when an item is created?", asked.Kind.QUANTITY),
        ("When was the treaty signed?", asked.Kind.QUANTITY),
        ("What is the default port?", asked.Kind.QUANTITY),
        ("What is dependency injection?", asked.Kind.DEFINITION),
        ("What does IFITM stand for?", asked.Kind.DEFINITION),
        ("What makes up an origin, in CORS terms?", asked.Kind.DEFINITION),
        ("Which package do I install to read form fields?", asked.Kind.NAME),
        ("What middleware handles CORS?", asked.Kind.NAME),
        ("Roughly how long does a certificate last?", asked.Kind.QUANTITY),
        ("In which FastAPI version did SSE support arrive?", asked.Kind.QUANTITY),
        ("Which address does the server bind to?", asked.Kind.NAME),
        ("Does FastAPI support GraphQL?", asked.Kind.YES_NO),
        ("Is it fine to keep --reload on in production?", asked.Kind.YES_NO),
        ("How does the cache work?", asked.Kind.OTHER),
        ("Which is faster?", asked.Kind.OTHER),
    ],
)
def test_questions_are_told_apart_by_what_they_ask_for(question: str, kind: asked.Kind) -> None:
    assert asked.kind_of(question) is kind


def sentence(text: str) -> Unit:
    return Unit(text, 0, len(text), "sentence", 0)


@pytest.mark.parametrize(
    "signpost",
    [
        "You will read about how to handle CORS with a middleware in the next section.",
        "Later, in the Advanced User Guide, you will see how to return a different status code.",
        "Read more about it in the FastAPI docs about returning a custom Response.",
        "And then you also read how to handle CORS with the CORSMiddleware.",
        "The app above is a minimal example to demonstrate how to broadcast messages.",
        "For more details, click here.",
        "How seat reductions are handled is explained in the Billing and refund policy.",
        "For more details, check Starlette's documentation for testing WebSockets.",
        "You can read more about it in the official documentation.",
    ],
)
def test_signposts_never_answer(signpost: str) -> None:
    assert not asked.may_answer(sentence(signpost), asked.Kind.OTHER, 3)


@pytest.mark.parametrize(
    "not_an_answer",
    [
        "Flaxman S, Mishra S, Gandy A, et al. Estimating the effects of interventions. 2020",
        "[12] Smith J. Transmission dynamics. Lancet 2020; 395: 689-697.",
        "Abstract:",
        "Materials And Methods Overview",
        "{* ../../docs_src/cors/tutorial001.py hl[2,6:11] *}",
        "│ Running in development mode, for production use: │",
    ],
)
def test_references_labels_headings_and_markup_never_answer(not_an_answer: str) -> None:
    assert not asked.may_answer(sentence(not_an_answer), asked.Kind.OTHER, 3)


def test_a_warning_led_by_an_emoji_may_answer_but_a_changelog_entry_may_not() -> None:
    warning = "\U0001f6a8 Keep in mind that these events only run for the main application."
    entry = Unit("\u2728 Add support for lifespan context managers.", 0, 46, "item", 0)
    assert asked.may_answer(sentence(warning), asked.Kind.OTHER, 3)
    assert not asked.may_answer(entry, asked.Kind.OTHER, 3)


def test_a_diagram_written_as_text_is_markup() -> None:
    diagram = "sequenceDiagram\n    participant Client\n    Client->>Proxy: GET /items"
    assert asked.is_markup(Unit(diagram, 0, len(diagram), "code", 0))
    assert not asked.may_answer(Unit(diagram, 0, len(diagram), "code", 0), asked.Kind.PROCEDURE, 3)
    arrows = "Client->>Proxy: HTTPS Request\nProxy->>Server: HTTP Request"  # after a blank line
    assert asked.is_markup(Unit(arrows, 0, len(arrows), "code", 0))
    assert not asked.is_markup(Unit("app = FastAPI()", 0, 15, "code", 0))


def test_code_answers_only_a_procedure() -> None:
    code = Unit("app.add_middleware(CORSMiddleware)", 0, 34, "code", 0)
    assert asked.may_answer(code, asked.Kind.PROCEDURE, 3)
    assert not asked.may_answer(code, asked.Kind.OTHER, 3)


def test_what_the_question_asks_for_is_recognised() -> None:
    quantity, definition = asked.Kind.QUANTITY, asked.Kind.DEFINITION
    assert asked.carries_wanted("It returns 201 Created.", quantity, None) == 1.0
    assert asked.carries_wanted("It returns a status code.", quantity, None) == -1.0
    assert asked.carries_wanted("All belong to one of three lineages.", quantity, None) == 1.0
    assert asked.carries_wanted("The Doctor rarely travels alone.", quantity, None) == 1.0
    subject = asked.subject_of("What is IFITM?")
    assert subject == "ifitm"
    defining = "The interferon-induced transmembrane (IFITM) proteins restrict viral entry."
    assert asked.carries_wanted(defining, definition, subject) == 1.0
    assert asked.carries_wanted("IFITM proteins were measured.", definition, subject) == 0.0
    assert asked.subject_of("What is Typer meant to be?") == "typer"
    assert asked.subject_of("What makes up an origin, in CORS terms?") == "origin"
    assert asked.carries_wanted("First install python-multipart.", asked.Kind.NAME, None) == 1.0
    injection = '"Dependency Injection" means that your code declares what it needs.'
    assert asked.carries_wanted(injection, definition, "dependency injection") == 2.0


def test_a_sentence_that_opens_with_the_definition_counts_double_and_a_mention_not_at_all() -> None:
    definition, subject = asked.Kind.DEFINITION, "openapi"
    opening = "OpenAPI (previously known as Swagger) is the open specification for building APIs."
    further = "In this case, OpenAPI is a specification that says how to describe an API."
    mention = "A path operation for /openapi.json (or your openapi_url) is registered."
    assert asked.carries_wanted(opening, definition, subject) == 2.0
    assert asked.carries_wanted(further, definition, subject) == 1.0
    assert asked.carries_wanted(mention, definition, subject) == 0.0


def test_a_name_counts_only_when_the_question_does_not_already_name_it() -> None:
    name = asked.Kind.NAME
    words = frozenset({"which", "address", "does", "fastapi", "run", "bind", "to"})
    assert asked.carries_wanted("It listens on the IP address 0.0.0.0.", name, None, words) == 1.0
    assert asked.carries_wanted("Then fastapi run starts the app.", name, None, words) == 0.0


def test_a_which_package_question_wants_something_to_install() -> None:
    name = asked.Kind.NAME
    words = question_words("Which package must be added so settings load from a dotenv file?")
    assert asked.kind_of("Which package must be added to read a dotenv file?") is name
    assert asked.carries_wanted("Add python-dotenv to your project.", name, None, words) == 1.0
    assert asked.carries_wanted("Define env_file in the Settings class.", name, None, words) == 0.0


def test_a_yes_no_question_wants_a_sentence_that_settles_it() -> None:
    yes_no = asked.Kind.YES_NO
    assert asked.carries_wanted("You shouldn't use it in production.", yes_no, None) == 1.0
    assert asked.carries_wanted("It helps a lot during development.", yes_no, None) == 0.0


def test_a_question_naming_what_no_source_mentions_is_told_apart() -> None:
    passages = ["Sign in with a password or with a Google account.", "Invite your team (HTTP API)."]
    assert asked.unmentioned("How do I log in with Okta?", passages) == {"okta"}
    assert asked.unmentioned("Can I sign in with Google?", passages) == set()
    assert asked.unmentioned("Which HTTP API invites people?", passages) == set()
    assert asked.unmentioned("How long is the 30 day trial?", passages) == set()  # numbers aside
    assert asked.unmentioned("Can I sign in with Googles accounts?", passages) == set()
    assert asked.about_something_else("Can I use SAML with Okta?", passages)
    assert not asked.about_something_else("Can I use Okta or Google?", passages)
    assert not asked.about_something_else("WHen can I sign in?", passages)


def test_a_changelog_is_told_apart_by_its_title_or_heading() -> None:
    assert asked.from_changelog("Release Notes", "Release Notes > 0.28.0 (2019-06-05)")
    assert asked.from_changelog("Project", "Changelog > v2.1.0")
    assert asked.from_changelog("Docs", "Docs > 1.4.2")
    assert not asked.from_changelog("Background Tasks", "Background Tasks > Using BackgroundTasks")
    assert not asked.from_changelog("Chloroplast", "Chloroplast > History")
    assert asked.asks_about_changes(asked.kind_of("In which version did SSE support arrive?"))
    assert not asked.asks_about_changes(asked.kind_of("How do I override a dependency?"))
