"""Any LangChain chat model as an answer provider: the prompt, streaming, error mapping."""

from __future__ import annotations

import asyncio
import hashlib
import html
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from citewise import stored_chunk
from citewise.answer.generators.base import REFUSAL, Turn, condense_heuristic
from citewise.errors import GenerationFailed, GenerationTimeout
from citewise.search.store import Hit


def prompt(name: str) -> str:
    return (resources.files("citewise.answer") / "prompts" / name).read_text(encoding="utf-8")


class ChatGenerator:
    """Grounds a chat model on numbered sources; the model's own errors become ours."""

    def __init__(
        self,
        model: BaseChatModel,
        timeout: float = 60.0,
        close: Callable[[], Awaitable[None]] | None = None,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.timeout = timeout
        self._close = close
        self._system = prompt("answer_system.txt").format(refusal=REFUSAL)
        self._user = prompt("answer_user.txt")
        self._condense = prompt("condense.txt")
        # Answers are cached only for a named model ("openai/<endpoint>/<model>/<temperature>"),
        # together with a digest of the prompts: editing a prompt retires old answers.
        prompts = "\0".join((self._system, self._user, self._condense)).encode("utf-8")
        digest = hashlib.sha256(prompts).hexdigest()[:16]
        self.cache_identity = f"{name}/prompts-{digest}" if name else None

    def messages(self, question: str, sources: Sequence[Hit]) -> list[BaseMessage]:
        """System rules, then the sources as escaped data blocks, then the question."""
        blocks = "\n\n".join(_source_block(n, hit) for n, hit in enumerate(sources, start=1))
        return [
            SystemMessage(self._system),
            HumanMessage(self._user.format(sources=blocks, question=question)),
        ]

    async def stream(self, question: str, sources: Sequence[Hit]) -> AsyncIterator[str]:
        """The model's answer as it arrives, all of it within ``timeout`` seconds.

        The timeout bounds the whole answer, not each wait: a model that trickles a token every
        few seconds would otherwise hold the stream (and the client) open for ever. Only waits
        on the model are cut short; the consumer's time between pieces counts but is never
        interrupted.
        """
        stream = cast(
            AsyncGenerator[Any, None], self.model.astream(self.messages(question, sources))
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(anext(stream), deadline - loop.time())
                except StopAsyncIteration:
                    return
                if isinstance(chunk.content, str) and chunk.content:
                    yield chunk.content
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except TimeoutError as exc:
            raise GenerationTimeout("the language model did not answer in time") from exc
        except Exception as exc:
            raise _translate(exc) from exc
        finally:
            await stream.aclose()

    async def aclose(self) -> None:
        """Release what the model holds open (HTTP connections); the app calls it at shutdown."""
        if self._close is not None:
            await self._close()

    async def condense(self, question: str, history: Sequence[Turn]) -> str:
        if not history:
            return question
        transcript = "\n".join(f"{t.role}: {t.content}" for t in history)
        request = self._condense.format(history=transcript, question=question)
        try:
            reply = await asyncio.wait_for(
                self.model.ainvoke([HumanMessage(request)]), self.timeout
            )
        except TimeoutError:
            return condense_heuristic(question, history)
        except Exception as exc:
            raise _translate(exc) from exc
        rewritten = reply.content.strip() if isinstance(reply.content, str) else ""
        return rewritten or question


def _source_block(n: int, hit: Hit) -> str:
    """One passage as data: escaped so its text cannot close the block or open a new one."""
    title = html.escape(str(hit.metadata.get(stored_chunk.TITLE, "")), quote=True)
    heading = html.escape(str(hit.metadata.get(stored_chunk.HEADING, "")), quote=True)
    body = html.escape(hit.text, quote=False)
    return f'<source id="{n}" title="{title}" section="{heading}">\n{body}\n</source>'


def _translate(exc: Exception) -> GenerationFailed:
    """Provider SDK errors -> ours, without echoing their text (it may hold URLs or keys)."""
    name = type(exc).__name__
    if "Timeout" in name:
        return GenerationTimeout("the language model did not answer in time")
    status = _http_status(exc)
    detail = f" (HTTP {status})" if status is not None else ""
    return GenerationFailed(f"the language model request failed: {name}{detail}")


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status the provider answered with, if any: the SDKs name it ``status_code``
    (openai, anthropic) or ``code`` (google-genai), on the error or on the one it wraps."""
    seen: BaseException | None = exc
    while seen is not None:
        for attribute in ("status_code", "code"):
            status = getattr(seen, attribute, None)
            if isinstance(status, int) and 100 <= status <= 599:
                return status
        seen = seen.__cause__
    return None
