"""What the hosted providers (openai, anthropic, gemini) share: one key and one model setting
for whichever is chosen, the start-up check of the key, and the name answers are cached under.

The key and the endpoint come from Citewise's settings only. Left unset, the vendors' SDKs
would pick up their own variables (``ANTHROPIC_API_KEY``, ``GOOGLE_API_KEY``,
``ANTHROPIC_BASE_URL``...), so a variable left in a shell could decide which account pays or
where the documents go; the providers pass both explicitly instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from citewise.answer.generators.chat import ChatGenerator
from citewise.errors import ConfigurationError
from citewise.settings import LLMSettings

# Local servers, and gateways that add the key themselves, accept any; the SDKs insist on one.
NO_KEY = SecretStr("not-needed")


def api_key(settings: LLMSettings, provider: str, vendor_variable: str) -> SecretStr:
    """``CITEWISE_LLM_API_KEY``, or a stand-in when ``CITEWISE_LLM_BASE_URL`` names a server
    that takes none; with neither the service must not start."""
    if settings.api_key is not None:
        return settings.api_key
    if settings.base_url is not None:
        return NO_KEY
    raise ConfigurationError(
        f"CITEWISE_ANSWER_PROVIDER={provider} needs CITEWISE_LLM_API_KEY (Citewise does not read "
        f"{vendor_variable}), or CITEWISE_LLM_BASE_URL for a server that takes no key"
    )


def needs_extra(provider: str, package: str) -> ConfigurationError:
    """The error for a provider whose optional dependencies are not installed."""
    return ConfigurationError(
        f"CITEWISE_ANSWER_PROVIDER={provider} needs {package}: pip install 'citewise[{provider}]'"
    )


def generator(
    model: BaseChatModel,
    settings: LLMSettings,
    provider: str,
    vendor_endpoint: str,
    close: Callable[[], Awaitable[None]],
) -> ChatGenerator:
    """``model`` as an answer provider whose answers are cached under the provider, the
    endpoint (the vendor's by its host name), the model, the temperature and the answer limit
    (``ChatGenerator`` adds the prompts)."""
    endpoint = settings.base_url or urlsplit(vendor_endpoint).netloc
    model_name = settings.model_for(provider)
    name = f"{provider}/{endpoint}/{model_name}/{settings.temperature}/{settings.max_tokens}"
    return ChatGenerator(model, timeout=settings.timeout_s, close=close, name=name)
