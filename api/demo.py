"""The demo host page ``citewise serve --demo`` runs beside the API, on another origin.

It is what a site owner's page is to Citewise: a different origin that loads ``/widget.js``
with a registered widget id. It also publishes the sample documents under ``/kb/``, so the
citations' deep links open something real.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

DEMO_WIDGET = "demo"


def demo_page(api_origin: str) -> str:
    template = (resources.files("api") / "static" / "demo.html").read_text(encoding="utf-8")
    return template.replace("{{API}}", api_origin)


def demo_app(api_origin: str, documents: Path) -> Starlette:
    page = demo_page(api_origin)

    async def index(_: object) -> HTMLResponse:
        return HTMLResponse(page)

    return Starlette(
        routes=[
            Route("/", index),
            Mount("/kb", StaticFiles(directory=documents), name="kb"),
        ]
    )
