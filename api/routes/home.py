"""``GET /``: what this service is and where to go next, for whoever opens its address.

JSON for API clients (and curl, which asks for anything); a small HTML page when a browser
says it prefers HTML. The same facts either way, all of them public already: the name,
version and summary in the OpenAPI schema, and the paths of the API reference and the health
checks. Nothing from the configuration (keys, paths, hosts, knowledge base names).
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.bodies import TextRoute
from api.routes.openapi_pages import ASSETS
from api.schemas import ServiceInfo

LINKS = {
    "docs": ("/docs", "API reference to try requests from (Swagger UI)"),
    "redoc": ("/redoc", "API reference to read (ReDoc)"),
    "openapi": ("/openapi.json", "OpenAPI schema"),
    "healthz": ("/healthz", "liveness"),
    "readyz": ("/readyz", "readiness, component by component"),
}

router = APIRouter(route_class=TextRoute)


@router.get(
    "/",
    tags=["operations"],
    response_model=ServiceInfo,
    responses={200: {"content": {"text/html": {}}, "description": "HTML if preferred."}},
)
async def home(request: Request) -> ServiceInfo | HTMLResponse:
    """What this service is, its version, and links to the API reference and health checks
    (an HTML page instead when the `Accept` header prefers `text/html`)."""
    root = request.scope.get("root_path", "")
    info = ServiceInfo(
        name=request.app.title,
        version=request.app.version,
        summary=request.app.summary or "",
        links={name: f"{root}{path}" for name, (path, _) in LINKS.items()},
    )
    if _prefers_html(request.headers.get("accept", "")):
        return HTMLResponse(_page(info, root))
    return info


def _prefers_html(accept: str) -> bool:
    """Whether ``text/html`` ranks above JSON in an ``Accept`` header (by quality, then by
    how specific the match is: ``application/*`` and ``*/*`` count for JSON)."""
    quality: dict[str, float] = {}
    for part in accept.lower().split(","):
        kind, *parameters = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[kind] = max(q, quality.get(kind, 0.0))
    json = quality.get("application/json", quality.get("application/*", quality.get("*/*", 0)))
    return quality.get("text/html", 0.0) > json


def _page(info: ServiceInfo, root: str) -> str:
    items = "\n".join(
        f'<li><a href="{escape(info.links[name])}">{escape(path)}</a>: {escape(text)}</li>'
        for name, (path, text) in LINKS.items()
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(info.name)}</title>
<link rel="icon" href="{escape(root)}{ASSETS}/favicon.png">
<style>body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;
padding: 0 1rem; }} small {{ color: #666; }}</style>
</head>
<body>
<h1>{escape(info.name)} <small>{escape(info.version)}</small></h1>
<p>{escape(info.summary)}</p>
<ul>
{items}
</ul>
</body>
</html>
"""
