"""The two inference routes as a plain ASGI app, in front of the FastAPI app that serves the rest.

``POST /v1/chat/completions`` and ``POST /v1/completions`` carry nearly all of a gateway's
traffic, and FastAPI's machinery per request (its middleware stack, route matching, dependency
solving, request objects) cost more CPU on this machine than the relay's own work. Here they
take the shortest path: check the client key, read the body (:class:`~proxy.body_limit.BodyLimit`
has capped it), call the service, send its response; any exception is answered by the same
mapping as the FastAPI app's handlers (:func:`proxy.errors.exception_response`), another method
on these paths by a 405 as FastAPI words it. Every other request goes to ``fallback``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.auth import check_client
from proxy.errors import error_body, exception_response
from proxy.service import ProxyService
from proxy.settings import ProxySettings

Handler = Callable[[bytes, dict[str, str]], Awaitable[Response]]


class InferenceRoutes:
    def __init__(self, service: ProxyService, settings: ProxySettings, fallback: ASGIApp) -> None:
        self._fallback = fallback
        self._keys = settings.api_keys
        self._routes: dict[str, Handler] = {
            "/v1/chat/completions": service.chat,
            "/v1/completions": service.completions,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None:
            await self._fallback(scope, receive, send)
            return
        if scope["method"] != "POST":
            body = error_body("Method Not Allowed", "invalid_request_error")
            await JSONResponse(body, 405, {"Allow": "POST"})(scope, receive, send)
            return
        # As ``dict(request.headers)`` reads them: names lower case, the last of repeated ones.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            check_client(self._keys, headers.get("authorization", ""))
            raw = await _body(receive)
            if raw is None:
                return  # the client left before sending its body: nobody to answer
            response = await handler(raw, headers)
        except Exception as exc:  # every failure is answered in OpenAI's shape
            response = exception_response(exc)
        await response(scope, receive, send)


async def _body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
