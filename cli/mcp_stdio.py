"""``citewise mcp``: the MCP server (``api.mcp_server``) over stdin and stdout, for an agent
that starts Citewise itself (Claude Desktop, an IDE, an agent framework).

Stdout carries the protocol and nothing else: the log goes to stderr, where MCP clients
collect a server's messages.
"""

from __future__ import annotations

from typing import Annotated

import typer

from citewise.errors import CitewiseError
from citewise.settings import Settings
from cli.console import fail


def mcp(
    kb: Annotated[
        str | None,
        typer.Option(
            "--kb", help="Knowledge base the tools use when a call names none (default: default)."
        ),
    ] = None,
) -> None:
    """Serve search and cited answers to an MCP client over stdin/stdout (`ask` and `search`
    tools, knowledge bases as resources). Configure the client to run this command."""
    import anyio

    from api.mcp_server import CitewiseMCP
    from citewise.knowledge_base import validate_kb
    from citewise.logs import configure_logging
    from citewise.threads import run_blocking
    from citewise.wiring import Services, build_services

    settings = Settings()
    configure_logging(settings.observability.log_format, settings.observability.log_level)

    async def serve(services: Services) -> None:
        try:
            await run_blocking(services.model.load)  # before the first question, as the API
            await CitewiseMCP(services, kb).run_stdio_async()
        finally:
            await services.aclose()

    try:
        if kb is not None:
            validate_kb(kb)
        services = build_services(settings)
    except CitewiseError as error:
        fail(error, False)
    anyio.run(serve, services)
