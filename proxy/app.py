"""The app factory: settings in, a ready FastAPI app out, with every client on ``app.state``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from guards.guard import Guard
from proxy import admin, routes
from proxy.body_limit import BodyLimit
from proxy.errors import install_error_handlers
from proxy.observe import Metrics, Observe
from proxy.service import ProxyService
from proxy.settings import ProxySettings
from proxy.state import GuardState
from proxy.upstream import Upstream

log = logging.getLogger(__name__)


def create_app(
    settings: ProxySettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    guard: Guard | None = None,
) -> FastAPI:
    """Build the proxy. ``transport`` replaces the network (tests); ``guard`` skips building one.

    With ``settings.concepts_path`` set and no ``guard`` given, the guard is built at startup; a
    broken concept file aborts the start with an error that names file, line and field.
    """
    state = GuardState(settings, guard)
    upstream = Upstream(settings, transport)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.load_initial()
        try:
            yield
        finally:
            await upstream.aclose()

    app = FastAPI(title="Nescio proxy", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.guard_state = state
    app.state.service = ProxyService(settings, state, upstream)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.state.metrics = Metrics(state.current_concepts)
    app.add_middleware(Observe, metrics=app.state.metrics)
    app.include_router(routes.api)
    app.include_router(routes.router)
    app.include_router(admin.router)
    return app
