"""The one place Citewise errors become HTTP responses.

Every error body is ``{"error": {"code": ..., "message": ...}}``. Messages of ``CitewiseError``
are written to be shown; anything else is logged and answered with a generic 500, so stack
traces, paths and keys never reach a client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from citewise import errors

log = logging.getLogger("citewise.api")

# What a client is told of an error nobody anticipated (the log has the rest).
INTERNAL_MESSAGE = "something went wrong on our side; it has been logged"

# One row per family (citewise/errors.py); the lookup walks each error's class hierarchy (its
# MRO), so a member answers with its family's status and a subfamily's row wins over its parent.
STATUS: dict[type[errors.CitewiseError], int] = {
    errors.InvalidRequest: 400,
    errors.TooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.DocumentError: 422,
    errors.RateLimited: 429,
    errors.UpstreamFailed: 502,
    errors.Unavailable: 503,
    errors.UpstreamTimeout: 504,
    errors.ConfigurationError: 500,
}


def status_of(error: errors.CitewiseError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def headers_of(error: errors.CitewiseError) -> dict[str, str]:
    if isinstance(error, errors.RateLimited):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, errors.Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    return {}


def response_to(error: errors.CitewiseError, *, close: bool = False) -> JSONResponse:
    """The response to an error. ``close``: end the connection after it, for a refusal sent
    before the request's body was read (the server would otherwise read the rest to keep the
    connection, however large the body says it is)."""
    headers = headers_of(error) | ({"Connection": "close"} if close else {})
    return JSONResponse(
        error_body(error.code, str(error)), status_code=status_of(error), headers=headers
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.CitewiseError)
    async def citewise_error(request: Request, exc: errors.CitewiseError) -> JSONResponse:
        return response_to(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", describe(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The framework's headers carry part of the answer: the methods a 405 allows.
        return JSONResponse(
            error_body("http_error", str(exc.detail)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal_error", INTERNAL_MESSAGE),
            status_code=500,
        )


def describe(exc: RequestValidationError | ValidationError) -> str:
    """Pydantic's errors as one readable line: ``body.question: field required; ...`` (of a
    request body, or of an MCP tool's arguments)."""
    parts = []
    for problem in exc.errors()[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request body is invalid"
