"""Gemini, through the Gemini API's REST endpoints, via langchain-google-genai
(``citewise[gemini]``)."""

from __future__ import annotations

from typing import Any

from citewise.answer.generators import hosted
from citewise.answer.generators.chat import ChatGenerator
from citewise.settings import LLMSettings

ENDPOINT = "https://generativelanguage.googleapis.com/"
API_VERSION = "v1beta"


def build(settings: LLMSettings) -> ChatGenerator:
    try:
        from langchain_google_genai import ChatGoogleGenerativeAI
    except ImportError as exc:
        raise hosted.needs_extra("gemini", "langchain-google-genai") from exc

    key = hosted.api_key(settings, "gemini", "GOOGLE_API_KEY or GEMINI_API_KEY")
    model = ChatGoogleGenerativeAI(
        model=settings.model_for("gemini"),
        api_key=key,
        # All given, so that nothing in the environment (GOOGLE_GENAI_USE_VERTEXAI,
        # GOOGLE_GENAI_API_VERSION, a LangSmith gateway) sends the request somewhere else.
        vertexai=False,
        base_url=settings.base_url or ENDPOINT,
        api_version=API_VERSION,
        temperature=settings.temperature,
        max_output_tokens=settings.max_tokens,
        timeout=settings.timeout_s,
        # Attempts, not retries: the Google SDK reads 0 as "its default", which retries.
        max_retries=settings.max_retries + 1,
        client_args={"transport": _transport()},
    )
    return hosted.generator(model, settings, "gemini", ENDPOINT, model.aclose)


def _transport() -> Any:
    """A transport of ours: google-genai then sends its requests through httpx2 (as the other
    providers' SDKs do), not through aiohttp, which it prefers whenever that is installed
    (chromadb installs it) and whose sessions it builds in a way aiohttp deprecates.

    The SDK hands the same arguments to its synchronous client, which Citewise never uses
    (answers are streamed asynchronously): that client may close the transport, and nothing
    more."""
    import httpx2

    class AsyncOnly(httpx2.AsyncHTTPTransport):
        def close(self) -> None:
            """Nothing to do: the asynchronous client's ``aclose`` releases the connections."""

    return AsyncOnly()
