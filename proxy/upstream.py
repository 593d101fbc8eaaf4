"""The client for the upstream OpenAI-compatible server (vLLM), with failures mapped to 502/504.

Responses are returned unread (``stream=True`` at the httpx level), so the service decides whether
to relay bytes as they arrive (streaming) or read them whole. Closing the response closes the
upstream connection, which is how vLLM learns that a disconnected client's generation can stop.
"""

from __future__ import annotations

from typing import Any

import httpx

from proxy.errors import UpstreamTimeout, UpstreamUnavailable
from proxy.settings import ProxySettings

# Headers never relayed from the client: hop-by-hop ones, the client's own credentials (proxy
# keys must not reach the upstream) and the ones httpx recomputes.
_DROP_REQUEST = {"host", "content-length", "authorization", "connection", "accept-encoding",
                 "transfer-encoding", "keep-alive", "upgrade", "te", "trailer", "cookie"}  # fmt: skip
_DROP_RESPONSE = {"content-length", "connection", "transfer-encoding", "keep-alive", "date",
                  "server", "content-encoding"}  # fmt: skip


class Upstream:
    """One pooled httpx client per app; ``transport`` lets tests inject ``httpx.MockTransport``."""

    def __init__(
        self, settings: ProxySettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._key = settings.upstream_api_key
        self._forward_client_auth = not settings.api_keys and self._key is None
        self._client = httpx.AsyncClient(
            base_url=settings.upstream_url.rstrip("/"),
            transport=transport,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self, incoming: dict[str, str]) -> dict[str, str]:
        headers = {k: v for k, v in incoming.items() if k.lower() not in _DROP_REQUEST}
        headers["accept-encoding"] = "identity"
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
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send and return the response with its body not yet read. Caller must close it."""
        request = self._client.build_request(
            method, path, json=json, headers=self._headers(headers or {})
        )
        try:
            return await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"upstream did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"upstream unreachable ({type(exc).__name__})") from exc


def relay_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in _DROP_RESPONSE}
