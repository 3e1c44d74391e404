"""App factory: settings are read once here and services are built once in the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import ValidationError
from pydantic_settings import SettingsError
from starlette.types import ASGIApp

from api import errors, mcp_http
from api.cors import WidgetCORSMiddleware
from api.embedded_worker import EmbeddedWorker
from api.hosts import AllowedHosts
from api.observability import RequestObserver
from api.proxies import ForwardedFor
from api.routes import (
    admin,
    chat_completions,
    health,
    home,
    jobs,
    kbs,
    metrics,
    openapi_pages,
    query,
    ui_chat,
    widget,
)
from citewise import __version__, freed_memory
from citewise.answer.generators.base import Generator
from citewise.logs import configure_logging
from citewise.settings import Settings, explain
from citewise.wiring import Services, build_services

log = logging.getLogger("citewise.api")

SUMMARY = "Answers questions from your documents, with citations to the exact passages."
DESCRIPTION = """Streaming answers (`/v1/ask/stream`) are server-sent events: `sources`, `delta`...,
`citations`, `done` — or `error`. `/v1/chat/completions` speaks the OpenAI API.
"""


class _CitewiseAPI(FastAPI):
    trusted_proxies: tuple[str, ...] = ()  # CITEWISE_TRUSTED_PROXIES

    def build_middleware_stack(self) -> ASGIApp:
        # add_middleware places middleware inside Starlette's ServerErrorMiddleware; this one
        # goes outside it, so the 500 that sends for an unhandled error gets a request id too.
        # The client address is settled first, so the access log names the same client as
        # the rate limits.
        return ForwardedFor(RequestObserver(super().build_middleware_stack()), self.trusted_proxies)


def create_app(
    settings: Settings | None = None,
    generator: Generator | None = None,
    *,
    worker_command: Sequence[str] | None = None,
) -> FastAPI:
    """Build the Citewise HTTP application; ``generator`` overrides the configured provider.

    ``worker_command`` is how to start an ingest worker (``citewise serve`` passes its own):
    with it, and CITEWISE_WORKERS=embedded, and a Redis to queue on, the app runs that worker
    beside itself while it runs (``api/embedded_worker.py``). Without it (``uvicorn
    --factory``, tests) no worker is started.

    Also sets up this process's logging (CITEWISE_LOG_FORMAT, CITEWISE_LOG_LEVEL): the factory
    is the one place both ``citewise serve`` and ``uvicorn --factory`` run, after uvicorn
    configured its own loggers.

    Without ``settings`` they are read from the environment (and ``.env``); a value that is
    not allowed ends the process with one line per mistake on stderr and exit status 2, as
    the CLI does, rather than a traceback through uvicorn.
    """
    settings = settings or _settings_or_exit()
    configure_logging(settings.observability.log_format, settings.observability.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await asyncio.to_thread(build_services, settings, generator)
        await asyncio.to_thread(services.model.load)
        _announce(services, worker_command is not None)
        app.state.services = services
        # After the services: the worker then finds the embedded Redis this process started.
        worker = None
        if worker_command is not None and _runs_own_worker(services):
            worker = EmbeddedWorker(worker_command)
            worker.start()
        # The model, Chroma and the tokenizers live as long as the process: freeze them, so the
        # cyclic garbage collector stops rescanning them in every full collection (p99 of 32
        # concurrent cache hits: about 105 ms -> 40 ms in bench/serve.py).
        gc.collect()
        gc.freeze()
        freed_memory.release()  # what loading the model freed: 58 MB of the process at ready
        try:
            async with mcp_http.running(app, services):
                yield
        finally:
            if worker is not None:  # first: it may be using the embedded Redis
                await asyncio.to_thread(worker.stop)
        gc.unfreeze()
        await services.aclose()

    app = _CitewiseAPI(
        title="Citewise",
        version=__version__,
        summary=SUMMARY,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc, without a CDN: api/routes/openapi_pages.py
        redoc_url=None,
    )
    app.trusted_proxies = tuple(settings.access.trusted_proxies)
    errors.install(app)
    app.include_router(home.router)
    app.include_router(openapi_pages.router)
    app.include_router(query.router)
    app.include_router(health.router)
    app.include_router(chat_completions.router)
    app.include_router(ui_chat.router)
    app.include_router(admin.router)
    app.include_router(widget.router)
    app.include_router(jobs.router)
    app.include_router(kbs.router)
    app.include_router(metrics.router)
    mcp_http.mount(app)
    # The last added is the outermost: the Host is checked first, then CORS answers
    # preflights. What a request must pass before its body is read is each route's to check
    # (api/admission.py), inside CORS, so a widget can read its refusals.
    app.add_middleware(WidgetCORSMiddleware)
    app.add_middleware(AllowedHosts, hosts=settings.access.hosts)
    return app


def _settings_or_exit() -> Settings:
    try:
        return Settings()
    except (ValidationError, SettingsError) as error:
        lines = explain(error)
        if lines is None:
            raise
        sys.stderr.write("".join(f"citewise: {line}\n" for line in lines))
        raise SystemExit(2) from None


def _runs_own_worker(services: Services) -> bool:
    return services.settings.ingest.workers == "embedded" and services.jobs is not None


def _announce(services: Services, can_run_worker: bool) -> None:
    """Say at start what protects the service and what it runs without (never any key)."""
    if services.keys.open:
        log.warning(
            "no API keys configured (CITEWISE_QUERY_KEYS, CITEWISE_ADMIN_KEYS): every endpoint, "
            "admin included, is open to anyone who can reach this port; requests must name it "
            "by one of %s (CITEWISE_ALLOWED_HOSTS) and pages of other sites are refused",
            ", ".join(services.settings.access.hosts),
        )
    elif services.keys.queries_public:
        log.warning("no query keys configured: search, ask and chat are open to anyone")
    if services.settings.access.metrics_key is None:
        log.info("/metrics is open to anyone who can reach this port (no CITEWISE_METRICS_KEY)")
    if services.redis is None:
        log.warning(
            "running without Redis: no embedding or answer cache, no server-side "
            "conversations, no rate limits"
        )
    else:
        log.info("Redis: %s (prefix %r)", services.redis.description, services.redis.prefix)
        if not services.limiter.active:
            log.warning("no rate limits configured")
        if services.settings.ingest.workers == "external":
            log.info("ingest jobs are left to `citewise worker` processes (CITEWISE_WORKERS)")
        elif not can_run_worker:
            log.warning(
                "CITEWISE_WORKERS=embedded, but only `citewise serve` runs an embedded worker: "
                "run `citewise worker` for ingest jobs (and set CITEWISE_WORKERS=external)"
            )
