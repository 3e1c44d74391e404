"""Ingest jobs over HTTP: queue an ingest of a server-side folder or of uploaded files."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import redis
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.bodies import TextRoute
from api.deps import ServicesDep
from api.security import AdminCaller
from api.uploads import receive_uploads
from citewise.errors import InvalidRequest, QueueUnavailable
from citewise.job_queue import JobQueue, new_job_id
from citewise.knowledge_base import validate_kb
from citewise.redis_client import RedisUnavailable
from citewise.threads import run_blocking
from citewise.wiring import Services
from ingest.web.address import normal, under_prefix

router = APIRouter(route_class=TextRoute, tags=["ingest jobs"])
T = TypeVar("T")

_JSON_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "path": {
                    "type": "string",
                    "description": "Folder or file under CITEWISE_INGEST_ROOT.",
                },
                "url": {
                    "type": "string",
                    "description": "Or a website (a web source) under "
                    "CITEWISE_WEB_ALLOWED_PREFIXES.",
                },
                "include": {"type": "array", "items": {"type": "string"}},
                "exclude": {"type": "array", "items": {"type": "string"}},
                "max_pages": {"type": "integer", "minimum": 1},
                "crawl": {"type": "boolean", "default": False},
                "rebuild": {"type": "boolean", "default": False},
            },
        }
    },
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {
                "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                "rebuild": {"type": "boolean", "default": False},
            },
            "required": ["files"],
        }
    },
}


class PathIngest(BaseModel):
    path: str = Field(min_length=1, max_length=4096)
    rebuild: bool = False


class WebIngest(BaseModel):
    """A web source: a URL under CITEWISE_WEB_ALLOWED_PREFIXES, with the options of
    ``citewise ingest URL``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    include: list[str] = Field(default_factory=list, max_length=100)
    exclude: list[str] = Field(default_factory=list, max_length=100)
    max_pages: int | None = Field(default=None, ge=1)
    crawl: bool = False
    rebuild: bool = False


@router.post(
    "/v1/kbs/{kb}/ingest",
    status_code=202,
    openapi_extra={"requestBody": {"required": True, "content": _JSON_BODY}},
)
async def submit_ingest(
    kb: str, request: Request, services: ServicesDep, _: AdminCaller
) -> dict[str, Any]:
    """Queue an ingest into ``kb``: JSON ``{path}`` under the ingest root, JSON ``{url}`` of a
    website under CITEWISE_WEB_ALLOWED_PREFIXES (with ``include``, ``exclude``, ``max_pages``,
    ``crawl``), or uploaded files.

    One job per knowledge base at a time (409 while one is queued or running). Follow it with
    ``GET /v1/jobs/{job_id}``; ``citewise worker`` runs the jobs.

    Uploaded files go into the knowledge base's uploads folder only once the job is accepted
    (``api/uploads.py``): a refused request leaves none of them behind.
    """
    kb = validate_kb(kb)
    jobs = _jobs(services)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raw = await request.body()
        if _names_url(raw):
            return await _submit_site(kb, raw, services, jobs)
        try:
            body = PathIngest.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidRequest(
                'send JSON {"path": "...", "rebuild": false}, {"url": "https://..."} '
                "or multipart files"
            ) from exc
        path = _under_root(body.path, services.settings.ingest.root)
        job = await _queue_call(partial(jobs.submit, kb, [str(path)], rebuild=body.rebuild))
        return asdict(job)
    # Refuse a busy knowledge base before reading what may be megabytes of files; the claim
    # taken once they are in decides.
    await _queue_call(jobs.check_free, kb)
    job_id = new_job_id()
    staged = await receive_uploads(
        request, job_id, services.settings.limits, services.settings.uploads_path
    )
    folder = services.settings.uploads_path / kb
    try:
        submit = partial(jobs.submit, kb, [str(folder)], rebuild=staged.rebuild, job_id=job_id)
        job = await _queue_call(submit, prepare=partial(staged.promote_into, folder))
    finally:
        staged.discard()  # promoted files are gone from it; refused ones go with it
    return asdict(job)


def _names_url(raw: bytes) -> bool:
    """Whether a JSON body names a web source (``url``) rather than a path."""
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return isinstance(body, dict) and "url" in body


async def _submit_site(kb: str, raw: bytes, services: Services, jobs: JobQueue) -> dict[str, Any]:
    """Queue a web source, if its URL lies under an allowed prefix (docs/security.md: an API
    caller must not steer the server's requests anywhere the operator did not name)."""
    try:
        body = WebIngest.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequest(
            'send JSON {"url": "https://...", "include": [...], "exclude": [...], '
            '"max_pages": 100, "crawl": false, "rebuild": false}'
        ) from exc
    settings = services.settings.ingest
    if not settings.web_allowed_prefixes:
        raise InvalidRequest(
            "web sources are disabled over the API: set CITEWISE_WEB_ALLOWED_PREFIXES"
        )
    if not under_prefix(body.url, settings.web_allowed_prefixes):
        raise InvalidRequest("the URL is not under CITEWISE_WEB_ALLOWED_PREFIXES")
    if body.max_pages is not None and body.max_pages > settings.web_max_pages:
        raise InvalidRequest(f"max_pages is over CITEWISE_WEB_MAX_PAGES ({settings.web_max_pages})")
    url = normal(body.url)
    assert url is not None  # under_prefix accepted it
    web = body.model_dump(include={"include", "exclude", "max_pages", "crawl"})
    submit = partial(jobs.submit, kb, [url], rebuild=body.rebuild, web=web)
    return asdict(await _queue_call(submit))


async def _queue_call(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return await run_blocking(call, *args, **kwargs)
    except (RedisUnavailable, redis.RedisError) as exc:
        raise QueueUnavailable("the job queue (Redis) cannot be reached") from exc


@router.get("/v1/jobs/{job_id}")
async def job_state(job_id: str, services: ServicesDep, _: AdminCaller) -> dict[str, Any]:
    """An ingest job's state (queued, started, finished, failed), progress and report."""
    jobs = _jobs(services)
    return asdict(await _queue_call(jobs.get, job_id))


def _jobs(services: Services) -> JobQueue:
    if services.jobs is None:
        raise QueueUnavailable("ingest jobs need Redis, which is switched off here")
    return services.jobs


def _under_root(path: str, root: Path | None) -> Path:
    """``path`` (absolute, or relative to the root) if it exists inside the ingest root."""
    if root is None:
        raise InvalidRequest(
            "server-side paths are disabled: set CITEWISE_INGEST_ROOT, or upload the files"
        )
    if "\x00" in path:  # the OS cannot take it (ValueError deep inside resolve)
        raise InvalidRequest("the path cannot be resolved: it contains a NUL byte")
    base = root.resolve()
    candidate = Path(path)
    try:
        resolved = (candidate if candidate.is_absolute() else base / candidate).resolve()
        # Resolved first, so neither '..' nor a symlink can lead out of the root.
        if resolved != base and base not in resolved.parents:
            raise InvalidRequest("the path must be inside the ingest root")
        if not resolved.exists():
            raise InvalidRequest(f"nothing at {path!r} under the ingest root")
    except (RuntimeError, OSError, ValueError) as exc:
        raise InvalidRequest(_unresolvable(exc)) from None  # the message names no server path
    return resolved


def _unresolvable(exc: BaseException) -> str:
    # A symlink loop is a RuntimeError from resolve() before Python 3.13, ELOOP after.
    if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP:
        return "the path cannot be resolved: it runs into a loop of symbolic links"
    return "the path cannot be resolved (a name too long, or a folder that cannot be read)"
