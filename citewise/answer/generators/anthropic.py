"""Claude, through Anthropic's Messages API, via langchain-anthropic (``citewise[anthropic]``)."""

from __future__ import annotations

from citewise.answer.generators import hosted
from citewise.answer.generators.chat import ChatGenerator
from citewise.errors import ConfigurationError
from citewise.settings import LLMSettings

ENDPOINT = "https://api.anthropic.com"
MAX_TEMPERATURE = 1.0  # the Messages API refuses more: every request would fail


def build(settings: LLMSettings) -> ChatGenerator:
    try:
        import anthropic
        from langchain_anthropic import ChatAnthropic
    except ImportError as exc:
        raise hosted.needs_extra("anthropic", "langchain-anthropic") from exc

    key = hosted.api_key(settings, "anthropic", "ANTHROPIC_API_KEY")
    if settings.temperature > MAX_TEMPERATURE:
        raise ConfigurationError(
            f"CITEWISE_LLM_TEMPERATURE is at most {MAX_TEMPERATURE} for anthropic"
        )
    # mypy takes the aliases of its pydantic fields (stop, model_name) for required arguments
    model = ChatAnthropic(  # type: ignore[call-arg]
        model=settings.model_for("anthropic"),
        # Always given: left unset, the SDK would follow ANTHROPIC_BASE_URL from the environment.
        base_url=settings.base_url or ENDPOINT,
        api_key=key,
        temperature=settings.temperature,
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
        max_tokens=settings.max_tokens,
    )
    # Our own connection pool, closed with the generator. langchain-anthropic shares one per
    # process, whose kept-alive connections outlive the event loop (and the app) that opened
    # them: the next app's first request fails with a connection error. It takes no client of
    # ours, so the SDK client it would build is built here, from its own parameters.
    client = anthropic.AsyncAnthropic(
        **model._client_params, http_client=anthropic.DefaultAsyncHttpxClient()
    )
    model._async_client = client
    return hosted.generator(model, settings, "anthropic", ENDPOINT, client.close)
