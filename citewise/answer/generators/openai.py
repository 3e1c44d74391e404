"""Any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, llama.cpp server) via langchain-openai."""

from __future__ import annotations

from citewise.answer.generators import hosted
from citewise.answer.generators.chat import ChatGenerator
from citewise.settings import LLMSettings

ENDPOINT = "https://api.openai.com/v1"


def build(settings: LLMSettings) -> ChatGenerator:
    import openai
    from langchain_openai import ChatOpenAI

    key = hosted.api_key(settings, "openai", "OPENAI_API_KEY")
    # Our own connection pool, closed with the generator: langchain-openai's default is shared
    # by the whole process, so its kept-alive connections outlive the event loop (and the app)
    # that opened them, and the next app to use it fails with "Event loop is closed".
    http_client = openai.DefaultAsyncHttpxClient()
    model = ChatOpenAI(
        model=settings.model_for("openai"),
        # Always given: left unset, the SDK would follow OPENAI_BASE_URL or OPENAI_API_BASE
        # from the environment, while the answers were cached as api.openai.com's.
        base_url=settings.base_url or ENDPOINT,
        api_key=key,
        temperature=settings.temperature,
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
        # Sent as max_completion_tokens, the name OpenAI's API wants (its reasoning models
        # refuse max_tokens), and as max_tokens, the name OpenAI-compatible servers
        # (llama.cpp, Ollama, vLLM) have long read, when the endpoint is not OpenAI's.
        max_completion_tokens=settings.max_tokens,
        extra_body=None if settings.base_url is None else {"max_tokens": settings.max_tokens},
        streaming=True,
        http_async_client=http_client,
    )
    return hosted.generator(model, settings, "openai", ENDPOINT, http_client.aclose)
