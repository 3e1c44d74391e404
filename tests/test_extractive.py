"""The offline answerer, with the real embedding model, on passages written like documentation:
answers shaped by the question, signposts never chosen, citations that mean something."""

from __future__ import annotations

import numpy as np
from langchain_core.embeddings import Embeddings

from citewise import stored_chunk
from citewise.answer.citations import support, verify
from citewise.answer.generators.extractive import ExtractiveGenerator
from citewise.search.store import Hit

STATUS_PAGE = (
    "Later, in the advanced guide, you will see how to return a different status code than "
    "the default you are declaring here.\n\n"
    "Each status code has a meaning. 200 means OK, the default for a successful response. "
    "When your endpoint creates something, return 201, which means Created.\n\n"
    "In these cases, you would normally return an HTTP status code in the range of 400 "
    "(from 400 to 499)."
)
CORS_PAGE = (
    "You will read about how to handle cross-origin requests in the next section.\n\n"
    "To let a frontend on another origin call your API, add the CORS middleware:\n\n"
    "- Import CORSMiddleware.\n"
    "- Make a list of the origins you allow.\n"
    "- Add it to your application with add_middleware().\n\n"
    "Browsers then send a preflight request first."
)
WRAPPED_TXT = (
    "Rejecting a report sends it back to its owner.\n"
    "A comment is required when rejecting, and it must be at least 10\n"
    "characters long, so the owner knows what to fix."
)


def hit(
    text: str,
    title: str,
    heading: str,
    embeddings: Embeddings,
    question: str,
    *,
    chunk_index: int = 0,
    retrieved: bool = True,
) -> Hit:
    similarity = float(
        np.dot(embeddings.embed_query(question), embeddings.embed_documents([text])[0])
    )
    metadata = {
        stored_chunk.SOURCE: f"{title.lower().replace(' ', '-')}.md",
        stored_chunk.TITLE: title,
        stored_chunk.HEADING: heading,
        stored_chunk.CHUNK_INDEX: chunk_index,
    }
    return Hit(f"id-{title}-{chunk_index}", text, metadata, similarity, similarity, retrieved)


def answer(embeddings: Embeddings, question: str, *pages: tuple[str, str, str]) -> str:
    hits = [hit(text, title, heading, embeddings, question) for text, title, heading in pages]
    return ExtractiveGenerator(embeddings).compose(question, hits)


def test_a_fact_question_gets_the_sentence_that_states_it(embeddings: Embeddings) -> None:
    question = "What status code should my endpoint return when it creates an item?"
    text = answer(embeddings, question, (STATUS_PAGE, "Status codes", "Status codes"))

    assert "201" in text and "Created" in text
    assert "you will see" not in text


def test_a_how_question_gets_the_steps_under_a_line_saying_where_they_come_from(
    embeddings: Embeddings,
) -> None:
    question = "How do I enable CORS?"
    text = answer(embeddings, question, (CORS_PAGE, "CORS", "CORS > Use CORSMiddleware"))

    lines = text.splitlines()
    assert lines[0] == "From CORS › Use CORSMiddleware:"
    assert lines[1].startswith("To let a frontend on another origin call your API")
    assert lines[2:] == [
        "- Import CORSMiddleware.",
        "- Make a list of the origins you allow.",
        "- Add it to your application with add_middleware() [1].",
    ]
    assert "next section" not in text


def test_a_hard_wrapped_sentence_is_answered_whole(embeddings: Embeddings) -> None:
    question = "How long must a rejection comment be?"
    text = answer(embeddings, question, (WRAPPED_TXT, "Expense approval", "Rejecting"))

    assert "at least 10 characters long" in text
    assert text.endswith(".")


def test_every_claim_of_an_offline_answer_is_supported_and_quotes_whole_units(
    embeddings: Embeddings,
) -> None:
    question = "How long must a rejection comment be?"
    hits = [hit(WRAPPED_TXT, "Expense approval", "Rejecting", embeddings, question)]
    text = ExtractiveGenerator(embeddings).compose(question, hits)

    citations = verify(text, hits, {}, "default")

    assert [c.supported for c in citations] == [True]
    assert "characters long" in citations[0].quote
    assert WRAPPED_TXT[citations[0].start : citations[0].end] == citations[0].quote


def test_a_claim_whose_number_or_name_the_passage_lacks_is_not_supported() -> None:
    wrong_code = "When your endpoint creates something, return 404, which means Created."
    wrong_name = "When your endpoint creates something, return 201, which means Accepted."
    right = "When your endpoint creates something, return 201, which means Created."

    assert support(right, STATUS_PAGE)[0] == 1.0
    assert support(wrong_code, STATUS_PAGE)[0] == 0.0
    assert support(wrong_name, STATUS_PAGE)[0] == 0.0
    page = Hit("id", STATUS_PAGE, {stored_chunk.SOURCE: "status.md"}, 1.0, 1.0)
    flagged = verify(wrong_code.replace("Created.", "Created [1]."), [page], {}, "default")
    assert [(c.supported, c.unsupported_claims) for c in flagged] == [(False, [wrong_code])]


BACKGROUND_INTRO = (
    "You can define background tasks to be run after returning a response.\n\n"
    "This is useful for operations that need to happen after a request, but that the client "
    "doesn't really have to wait for, such as sending an e-mail notification after an action."
)
BACKGROUND_USE = (
    "First, import BackgroundTasks and declare a parameter of that type in your path "
    "operation function.\n\n"
    "Then pass the task function to add_task() on that parameter."
)


def test_a_how_question_reads_on_into_the_passage_that_continues_the_section(
    embeddings: Embeddings,
) -> None:
    question = "How can I send an e-mail after the response is sent, without the client waiting?"
    title = "Background Tasks"
    hits = [
        hit(BACKGROUND_INTRO, title, title, embeddings, question),
        hit(BACKGROUND_USE, title, title, embeddings, question, chunk_index=1, retrieved=False),
    ]
    text = ExtractiveGenerator(embeddings).compose(question, hits)

    assert text.startswith("From Background Tasks:\n")
    assert "[1]" in text and "import BackgroundTasks" in text and "[2]" in text


def test_only_the_top_passages_and_those_read_around_them_are_read(
    embeddings: Embeddings,
) -> None:
    question = "How long must a rejection comment be?"
    hits = [
        hit(STATUS_PAGE, "Status codes", "Status codes", embeddings, question),
        hit(CORS_PAGE, "CORS", "CORS", embeddings, question),
        hit(BACKGROUND_USE, "Background Tasks", "Tasks", embeddings, question),
        hit(WRAPPED_TXT, "Expense approval", "Rejecting", embeddings, question),  # 4th: unread
    ]
    assert "characters" not in ExtractiveGenerator(embeddings).compose(question, hits)
    hits[3] = hit(
        WRAPPED_TXT, "Expense approval", "Rejecting", embeddings, question, retrieved=False
    )
    text = ExtractiveGenerator(embeddings).compose(question, hits)
    assert "at least 10 characters long" in text and text.endswith("[4].")


def test_a_long_sentence_introducing_code_that_is_not_there_answers_as_a_sentence(
    embeddings: Embeddings,
) -> None:
    page = (
        "Header parameters are converted from underscores to hyphens.\n\n"
        "To turn that off, set the parameter convert_underscores of Header to False:\n\n"
        "{* ../../docs_src/header_params/tutorial002.py hl[10] *}"
    )
    question = "How do I stop header names from being converted to hyphens?"
    text = answer(embeddings, question, (page, "Header Parameters", "Header Parameters"))

    assert "set the parameter convert_underscores of Header to False [1]." in text
    assert "docs_src" not in text


def test_a_line_that_only_presents_a_missing_diagram_never_answers(embeddings: Embeddings) -> None:
    page = (
        "Here is a drawing of how the proxy adds the forwarded headers between the client "
        "and the server:\n\n"
        "sequenceDiagram\n    participant Client\n    Client->>Proxy: GET /items\n\n"
        "To trust those headers, start the server with --forwarded-allow-ips set to the "
        "proxy's address."
    )
    question = "How can my server trust the forwarded headers my proxy adds?"
    text = answer(embeddings, question, (page, "Behind a Proxy", "Forwarded headers"))

    assert "--forwarded-allow-ips" in text
    assert "Here is a drawing" not in text and "participant" not in text


def test_a_sentence_keeps_its_marker_before_any_decoration_after_its_full_stop(
    embeddings: Embeddings,
) -> None:
    page = "Typer is meant to be the FastAPI of command-line apps. \u2328\ufe0f \U0001f680"
    text = answer(embeddings, "What is Typer meant to be?", (page, "Typer", "Typer"))

    assert "FastAPI of command-line apps [1]." in text
    citations = verify(text, [hit(page, "Typer", "Typer", embeddings, "Typer")], {}, "default")
    assert citations and all(c.supported for c in citations)


def test_a_chosen_line_ending_in_a_colon_brings_what_it_introduces(embeddings: Embeddings) -> None:
    page = (
        "UploadFile has several advantages over bytes:\n\n"
        "- It uses a spooled file:\n"
        "- A file kept in memory up to a maximum size, then stored on disk.\n\n"
        "You can read its metadata too."
    )
    question = "What is the spooled file that UploadFile uses?"
    text = answer(embeddings, question, (page, "Request Files", "UploadFile"))

    assert "It uses a spooled file:" in text
    assert "maximum size, then stored on disk" in text


def test_a_how_question_is_answered_from_the_guide_rather_than_the_release_notes(
    embeddings: Embeddings,
) -> None:
    question = "How can a test replace one of my dependencies with a fake?"
    notes = (
        "Implement dependency overrides for testing.\n\n"
        "This allows using fakes of dependencies in tests."
    )
    guide = (
        "To replace a dependency in tests, put the fake in app.dependency_overrides, keyed by "
        "the original."
    )
    text = answer(
        embeddings,
        question,
        (notes, "Release Notes", "Release Notes > 0.28.0 (2019-06-05)"),
        (guide, "Testing Dependencies", "Testing Dependencies > Use dependency_overrides"),
    )
    assert "dependency_overrides" in text and "[2]" in text


def test_a_how_to_answer_names_the_api_its_sections_are_headed_by(embeddings: Embeddings) -> None:
    question = "How do I reply with a 404 error when the requested item does not exist?"
    example = (
        "If the client asks for an item that does not exist, it receives a 404 status code "
        "and a JSON body saying the item was not found."
    )
    use = "To return HTTP responses with errors to the client you raise HTTPException."
    hits = [
        hit(example, "Handling Errors", "Handling Errors > The response", embeddings, question),
        hit(use, "Handling Errors", "Handling Errors > Use HTTPException", embeddings, question),
    ]
    text = ExtractiveGenerator(embeddings).compose(question, hits)

    assert "HTTPException [2]" in text


def test_a_what_is_question_gets_the_defining_sentence_from_any_retrieved_passage(
    embeddings: Embeddings,
) -> None:
    question = "What is OpenAPI?"
    extending = (
        "As part of creating the application object, a path operation for /openapi.json is "
        "registered. By default, the method .openapi() checks whether the schema was already "
        "generated and returns it."
    )
    reference = "There are several utilities to handle OpenAPI in FastAPI."
    models = "The OpenAPI models describe the schema FastAPI generates for your API."
    security = (
        "OpenAPI (previously known as Swagger) is the open specification for building APIs. "
        "FastAPI is based on OpenAPI."
    )
    text = answer(
        embeddings,
        question,
        (extending, "Extending OpenAPI", "Extending OpenAPI > The normal process"),
        (reference, "OpenAPI", "OpenAPI"),
        (models, "OpenAPI models", "OpenAPI models"),
        (security, "Security", "Security > OpenAPI"),
    )
    assert text.startswith("OpenAPI (previously known as Swagger) is the open specification")
    assert "[4]" in text


def test_a_fact_question_reads_past_release_notes_to_the_page_that_explains(
    embeddings: Embeddings,
) -> None:
    question = "Which pip command installs FastAPI with its standard dependencies?"
    notes = [
        "Now fastapi comes without the standard dependencies unless you install with pip "
        'install "fastapi[standard]".',
        "The standard dependencies include uvicorn and the fastapi-cli.",
        "Before, pip install fastapi brought them all.",
    ]
    guide = 'Install FastAPI with its standard dependencies: pip install "fastapi[standard]".'
    pages = [(note, "Release Notes", "Release Notes > 0.112.0 (2024-08-02)") for note in notes]
    text = answer(
        embeddings, question, *pages, (guide, "Tutorial", "Tutorial - User Guide > Install")
    )
    assert 'pip install "fastapi[standard]"' in text and "[4]" in text
    assert "[1]" not in text and "[2]" not in text and "[3]" not in text


class _CountingEmbeddings(Embeddings):
    """The real model, counting the texts it is given to embed."""

    def __init__(self, model: Embeddings) -> None:
        self.model, self.documents = model, 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents += len(texts)
        return self.model.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.model.embed_query(text)


def test_only_the_best_units_by_the_cheap_signals_go_through_the_model(
    embeddings: Embeddings,
) -> None:
    from citewise.answer.generators.extractive import COMPARED

    question = "How do I enable CORS?"
    steps = "\n".join(f"- Step {i}: add origin number {i} to the allowed list." for i in range(40))
    counting = _CountingEmbeddings(embeddings)
    hits = [hit(CORS_PAGE + "\n\n" + steps, "CORS", "CORS", embeddings, question)]
    text = ExtractiveGenerator(counting).compose(question, hits)

    assert counting.documents == COMPARED
    assert "CORSMiddleware" in text
