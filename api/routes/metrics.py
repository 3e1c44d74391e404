"""``GET /metrics`` for Prometheus.

Left out of the OpenAPI schema (it is for the scraper, not for API clients) and of the rate
limits (a scraper polls on a schedule, and a refused scrape is a gap on every dashboard).
Protection is its own bearer token, ``CITEWISE_METRICS_KEY``, not an API key: the token sits in
the Prometheus configuration, where an admin key would grant far more than reading counters.
Unset, the endpoint is open: the metrics hold counts, durations and knowledge base names, no
questions or keys, and the usual deployment scrapes over a private network.
"""

from __future__ import annotations

import hmac

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import SecretStr

from api.bodies import TextRoute
from api.deps import ServicesDep
from citewise import metrics
from citewise.errors import Unauthorized

router = APIRouter(route_class=TextRoute)


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request, services: ServicesDep) -> Response:
    """Prometheus metrics of this process (of every worker, in multiprocess mode)."""
    _check_key(services.settings.access.metrics_key, request.headers.get("authorization"))
    jobs = getattr(services, "jobs", None)  # the job queue, when the services have one
    body, content_type = await anyio.to_thread.run_sync(
        metrics.render,
        request.headers.get("accept", ""),
        services.settings.observability.prometheus_multiproc_dir,
        jobs.depth if jobs is not None else None,
    )
    return Response(body, headers={"Content-Type": content_type})


def _check_key(expected: SecretStr | None, authorization: str | None) -> None:
    if expected is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    wanted = expected.get_secret_value().encode()
    # compare_digest: the time taken must not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), wanted):
        raise Unauthorized(
            "/metrics needs the metrics key (CITEWISE_METRICS_KEY) as a bearer token"
        )
