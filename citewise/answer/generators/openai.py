"""Any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, llama.cpp server) via langchain-openai."""

from __future__ import annotations

from pydantic import SecretStr

from citewise.answer.generators.chat import ChatGenerator
from citewise.errors import ConfigurationError
from citewise.settings import LLMSettings

ENDPOINT = "https://api.openai.com/v1"


def build(settings: LLMSettings) -> ChatGenerator:
    import openai
    from langchain_openai import ChatOpenAI

    if settings.api_key is None and settings.base_url is None:
        raise ConfigurationError(
            "CITEWISE_ANSWER_PROVIDER=openai needs CITEWISE_LLM_API_KEY "
            "(or CITEWISE_LLM_BASE_URL for a local server that takes no key)"
        )
    # Our own connection pool, closed with the generator: langchain-openai's default is shared
    # by the whole process, so its kept-alive connections outlive the event loop (and the app)
    # that opened them, and the next app to use it fails with "Event loop is closed".
    http_client = openai.DefaultAsyncHttpxClient()
    model = ChatOpenAI(
        model=settings.model,
        # Always given: left unset, the SDK would follow OPENAI_BASE_URL or OPENAI_API_BASE
        # from the environment, while the answers were cached as api.openai.com's.
        base_url=settings.base_url or ENDPOINT,
        # Local servers accept any key; the SDK insists on one being set.
        api_key=settings.api_key or SecretStr("not-needed"),
        temperature=settings.temperature,
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
        streaming=True,
        http_async_client=http_client,
    )
    name = f"openai/{settings.base_url or 'api.openai.com'}/{settings.model}/{settings.temperature}"
    return ChatGenerator(model, timeout=settings.timeout_s, close=http_client.aclose, name=name)
