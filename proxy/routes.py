"""The FastAPI routes: models, health probes, metrics. Thin: parse, call the service, return.

The two inference routes are not here: :mod:`proxy.inference` serves them on a leaner path.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from proxy.auth import require_client
from proxy.observe import Metrics
from proxy.service import ProxyService

router = APIRouter()
api = APIRouter(prefix="/v1", dependencies=[Depends(require_client)])


def _service(request: Request) -> ProxyService:
    service: ProxyService = request.app.state.service
    return service


@api.get("/models")
async def models(request: Request) -> Response:
    return await _service(request).models(dict(request.headers))


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process serves requests."""
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics (README, "Metrics and logs")."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: the guard is built (when concepts are configured) and the upstream answers."""
    service = _service(request)
    guard_ok = service.settings.concepts_path is None or service.state.guard is not None
    upstream_ok = await service.upstream_ready()
    body = {
        "guard": guard_ok,
        "upstream": upstream_ok,
        "concepts": len(service.state.current_concepts().concepts),
    }
    return JSONResponse(body, status_code=200 if guard_ok and upstream_ok else 503)
