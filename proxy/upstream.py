"""The client for the upstream OpenAI-compatible server (vLLM), with failures mapped to 502/504.

Responses are returned unread, so the service decides whether to relay bytes as they arrive
(streaming) or read them whole. Closing the response closes the upstream connection, which is how
vLLM learns that a disconnected client's generation can stop.

Requests go straight to an ``httpx.AsyncBaseTransport`` (by default :class:`AiohttpTransport`;
tests inject ``httpx.MockTransport``), not through ``httpx.AsyncClient``: the proxy needs none of
the client's layers (base-URL merging, cookies, auth flows, redirects, event hooks), and they cost
~0.3 ms of CPU per request on this machine, more than the rest of the relay's own work.
"""

from __future__ import annotations

import httpx

from proxy.errors import UpstreamTimeout, UpstreamUnavailable
from proxy.settings import ProxySettings
from proxy.transport import AiohttpTransport

# Headers never relayed from the client: hop-by-hop ones, the client's own credentials (proxy
# keys must not reach the upstream) and the ones recomputed for the forwarded body.
_DROP_REQUEST = {"host", "content-length", "authorization", "connection", "accept-encoding",
                 "transfer-encoding", "keep-alive", "upgrade", "te", "trailer", "cookie"}  # fmt: skip
_DROP_RESPONSE = {"content-length", "connection", "transfer-encoding", "keep-alive", "date",
                  "server", "content-encoding"}  # fmt: skip


class Upstream:
    """One pooled transport per app; ``transport`` lets tests inject ``httpx.MockTransport``."""

    def __init__(
        self, settings: ProxySettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._key = settings.upstream_api_key
        self._forward_client_auth = not settings.api_keys and self._key is None
        self._base = settings.upstream_url.rstrip("/")
        self._urls: dict[str, httpx.URL] = {}
        self._transport = transport if transport is not None else AiohttpTransport()
        # As httpx.Timeout(read_timeout, connect=connect_timeout) set them: waiting for a free
        # pooled connection (pool) may take as long as waiting for bytes.
        self._timeout = {
            "connect": settings.connect_timeout,
            "read": settings.read_timeout,
            "write": settings.read_timeout,
            "pool": settings.read_timeout,
        }

    async def aclose(self) -> None:
        await self._transport.aclose()

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self._base + path)
        return url

    def _headers(self, incoming: dict[str, str], content_type: bool) -> dict[str, str]:
        headers = {k: v for k, v in incoming.items() if k.lower() not in _DROP_REQUEST}
        headers["accept-encoding"] = "identity"
        if content_type:
            headers["content-type"] = "application/json"
        if self._key is not None:
            headers["authorization"] = f"Bearer {self._key.get_secret_value()}"
        elif self._forward_client_auth and "authorization" in incoming:
            headers["authorization"] = incoming["authorization"]
        return headers

    async def send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send ``content`` (a JSON document) and return the response with its body not yet
        read. Caller must close it."""
        request = httpx.Request(
            method,
            self._url(path),
            headers=self._headers(headers or {}, content is not None),
            content=content,
            extensions={"timeout": self._timeout},
        )
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"upstream did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"upstream unreachable ({type(exc).__name__})") from exc
        response.request = request
        return response


def relay_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in _DROP_RESPONSE}
