"""Request-scoped access to the services built once in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from citewise.wiring import Services


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread, on every request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
