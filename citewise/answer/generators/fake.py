"""A scripted chat model for tests and demos: replies in turn from CITEWISE_FAKE_REPLIES."""

from __future__ import annotations

import hashlib
import json
from itertools import cycle

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from citewise.answer.generators.chat import ChatGenerator
from citewise.settings import LLMSettings


def build(settings: LLMSettings) -> ChatGenerator:
    replies = cycle([AIMessage(text) for text in settings.fake_replies])
    script = hashlib.sha256(json.dumps(settings.fake_replies).encode()).hexdigest()[:16]
    return ChatGenerator(
        GenericFakeChatModel(messages=replies),
        timeout=settings.timeout_s,
        name=f"fake/{script}",
    )
