"""Any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, llama.cpp server) via langchain-openai."""

from __future__ import annotations

from pydantic import SecretStr

from citewise.answer.generators.chat import ChatGenerator
from citewise.errors import ConfigurationError
from citewise.settings import Settings


def build(settings: Settings) -> ChatGenerator:
    import openai
    from langchain_openai import ChatOpenAI

    if settings.llm.api_key is None and settings.llm.base_url is None:
        raise ConfigurationError(
            "CITEWISE_ANSWER_PROVIDER=openai needs CITEWISE_LLM_API_KEY "
            "(or CITEWISE_LLM_BASE_URL for a local server that takes no key)"
        )
    # Our own connection pool, closed with the generator: langchain-openai's default is shared
    # by the whole process, so its kept-alive connections outlive the event loop (and the app)
    # that opened them, and the next app to use it fails with "Event loop is closed".
    http_client = openai.DefaultAsyncHttpxClient()
    model = ChatOpenAI(
        model=settings.llm.model,
        base_url=settings.llm.base_url,
        # Local servers accept any key; the SDK insists on one being set.
        api_key=settings.llm.api_key or SecretStr("not-needed"),
        temperature=settings.llm.temperature,
        timeout=settings.llm.timeout_s,
        max_retries=settings.llm.max_retries,
        streaming=True,
        http_async_client=http_client,
    )
    name = (
        f"openai/{settings.llm.base_url or 'api.openai.com'}/{settings.llm.model}/"
        f"{settings.llm.temperature}"
    )
    return ChatGenerator(model, timeout=settings.llm.timeout_s, close=http_client.aclose, name=name)
