"""The app factory: settings in, a ready app out, with every client on ``app.state``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from guards.guard import Guard
from proxy import admin, routes
from proxy.body_limit import BodyLimit
from proxy.errors import install_error_handlers
from proxy.inference import InferenceRoutes
from proxy.observe import Metrics, Observe
from proxy.service import ProxyService
from proxy.settings import ProxySettings
from proxy.state import GuardState
from proxy.upstream import Upstream

log = logging.getLogger(__name__)


class ProxyApp(FastAPI):
    """FastAPI for the admin API, models, probes and metrics; every HTTP request first passes
    :class:`Observe` (access line, metrics) and :class:`BodyLimit`, then the lean inference
    routes (:mod:`proxy.inference`), which hand anything else to FastAPI."""

    front: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.front(scope, receive, send)
        else:  # lifespan
            await super().__call__(scope, receive, send)


def create_app(
    settings: ProxySettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    guard: Guard | None = None,
) -> ProxyApp:
    """Build the proxy. ``transport`` replaces the network (tests); ``guard`` skips building one.

    With ``settings.concepts_path`` set and no ``guard`` given, the guard is built at startup; a
    broken concept file aborts the start with an error that names file, line and field.
    """
    state = GuardState(settings, guard)
    upstream = Upstream(settings, transport)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.load_initial()
        watcher = asyncio.create_task(state.watch(), name="nescio-concept-sync")
        try:
            yield
        finally:
            watcher.cancel()
            await upstream.aclose()
            metrics.close()

    app = ProxyApp(title="Nescio proxy", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.guard_state = state
    app.state.service = service = ProxyService(settings, state, upstream)
    install_error_handlers(app)
    app.state.metrics = metrics = Metrics(state.current_concepts)
    state.on_swap = metrics.concept_version.set
    app.include_router(routes.api)
    app.include_router(routes.router)
    app.include_router(admin.router)
    fastapi = partial(FastAPI.__call__, app)
    inference = InferenceRoutes(service, settings, fallback=fastapi)
    app.front = Observe(BodyLimit(inference, settings.max_body_bytes), app.state.metrics)
    return app
