"""The app factory every service uses: lifespan model loading, middlewares, errors, health, metrics.

With an API key set, every /v1 route and /metrics require it; /healthz and /readyz stay
public (orchestrators probe without credentials, and their bodies hold no secrets: URLs
are redacted), and so do /docs and /openapi.json (the API's shape, no data).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from cascade.config import Settings, redact
from services.common.auth import require_api_key
from services.common.errors import install_error_handlers
from services.common.metrics import ServiceMetrics
from services.common.middleware import BodyLimitMiddleware, RequestContextMiddleware
from services.common.queue import Queues

logger = logging.getLogger(__name__)

Loader = Callable[[FastAPI], Awaitable[None]]
"""Loads the service's models into app.state (run in the lifespan, before /readyz turns green)."""

ops = APIRouter(tags=["operations"])


@ops.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: the process answers (models may still be loading)."""
    return {"status": "ok"}


@ops.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready: models are loaded and requests will be served."""
    state = request.app.state
    body = {"status": "ready" if state.ready else "loading", "service": state.metrics.service,
            "models": sorted(redact(m) for m in state.loaded)}
    if state.load_error:
        body.update(status="failed", error=redact(state.load_error))
    return JSONResponse(body, status_code=200 if state.ready else 503)


@ops.get("/metrics", dependencies=[Depends(require_api_key)])
async def metrics(request: Request) -> Response:
    """Prometheus text; behind the API key when one is set (labels reveal models and traffic)."""
    data, content_type = request.app.state.metrics.render()
    return Response(data, media_type=content_type)


def create_service_app(name: str, settings: Settings, routers: Sequence[APIRouter], load: Loader) -> FastAPI:
    """A FastAPI app for one service; `load` fills app.state in the lifespan (models loaded once)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await load(app)
            app.state.ready = True
            logger.info("%s ready", name, extra={"fields": {"models": sorted(redact(m) for m in app.state.loaded)}})
        except Exception as exc:
            app.state.load_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            logger.exception("%s failed to load its models", name)
            raise
        yield

    app = FastAPI(title=f"cascade {name}", lifespan=lifespan, version="0.1.0")
    svc = settings.service
    metrics_ = ServiceMetrics(name)
    app.state.settings = settings
    app.state.metrics = metrics_
    app.state.ready = False
    app.state.load_error = None
    app.state.loaded = set()
    app.state.queues = Queues(concurrency=svc.max_concurrency, max_waiting=svc.max_queue,
                              wait_timeout=svc.queue_timeout_s, metrics=metrics_)
    install_error_handlers(app)
    app.include_router(ops)
    auth = [Depends(require_api_key)] if svc.api_key is not None else []
    for router in routers:
        app.include_router(router, dependencies=auth)
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(svc.max_upload_mb * 1e6))
    app.add_middleware(RequestContextMiddleware, metrics=metrics_)
    return app
