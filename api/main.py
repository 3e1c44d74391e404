"""App factory: settings are read once here and clients are built once in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from citewise import __version__
from citewise.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Citewise HTTP application."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        yield

    app = FastAPI(title="Citewise", version=__version__, lifespan=lifespan)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process is up and serving requests."""
        return {"status": "ok"}

    return app
