"""App factory: settings are read once here and services are built once in the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, openai_compat, routes
from citewise import __version__
from citewise.generators.base import Generator
from citewise.providers import build_services
from citewise.settings import Settings

DESCRIPTION = """Answers questions from your documents, with citations to the exact passages.

Streaming answers (`/v1/ask/stream`) are server-sent events: `sources`, `delta`...,
`citations`, `done` — or `error`. `/v1/chat/completions` speaks the OpenAI API.
"""


def create_app(settings: Settings | None = None, generator: Generator | None = None) -> FastAPI:
    """Build the Citewise HTTP application; ``generator`` overrides the configured provider."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await asyncio.to_thread(build_services, settings, generator)
        await asyncio.to_thread(services.embeddings.load)
        app.state.services = services
        yield
        close = getattr(services.answerer.generator, "aclose", None)
        if close is not None:  # e.g. the LLM client's connections
            await close()

    app = FastAPI(title="Citewise", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(openai_compat.router)
    return app
