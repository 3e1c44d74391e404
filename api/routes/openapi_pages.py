"""``/docs`` (Swagger UI) and ``/redoc``, with their scripts and styles served by this app.

FastAPI's own pages load them from a CDN, so on a machine without the internet, or behind a
proxy that blocks it, ``/docs`` is a blank page; and every visit tells the CDN who is reading
whose API. The files come from the fastapi-offline package, which ships them (in its ``static``
folder) and is refreshed with Swagger UI's releases; its ``FastAPIOffline`` factory is not used
because it builds a plain ``FastAPI``, where Citewise's app is a subclass. Swagger UI's
validator badge is switched off: it would send the schema's address to validator.swagger.io.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from api.bodies import TextRoute
from citewise.errors import NotFound

ASSETS = "/docs/assets"
FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
FOLDER = Path(str(resources.files("fastapi_offline") / "static"))

router = APIRouter(route_class=TextRoute, include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """The API reference to try requests from (Swagger UI)."""
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """The API reference to read (ReDoc)."""
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
        with_google_fonts=False,
    )


@router.get(ASSETS + "/{name}")
async def asset(name: str) -> FileResponse:
    """One of the pages' files; a fixed list, so no other path of the package can be asked."""
    if name not in FILES:
        raise NotFound("no such file")
    return FileResponse(FOLDER / name, media_type=FILES[name])
