"""The network transport to the upstream: aiohttp's HTTP/1.1 client behind httpx's transport API.

Why not httpx's own transport (httpcore + h11): measured on this 2-core machine against the echo
upstream, httpx cost ~0.9 ms of CPU per request on one connection and ~2.5 ms at 16-64 concurrent
requests (h11 is pure Python, and httpcore's pool scans every pooled connection, polling each
socket, on every request), aiohttp ~0.2-0.26 ms (C parser, a plain keep-alive queue); see the
README, "Line rate". The proxy keeps httpx's *types* (``httpx.Request`` / ``httpx.Response``, the
``AsyncBaseTransport`` interface), so tests still inject ``httpx.MockTransport`` and the relay code
reads one kind of response.

Promises, in httpx's terms, so the callers' error mapping (502 / 504) is unchanged:

- connecting failed: ``httpx.ConnectError``; connecting took too long: ``httpx.ConnectTimeout``;
- no byte for ``read`` seconds (headers or body): ``httpx.ReadTimeout``;
- the upstream closed the connection or broke HTTP: ``httpx.RemoteProtocolError``; any other
  socket failure: ``httpx.ReadError``.

The body is passed on as it came, ``content-encoding`` and all: ``httpx.Response.aiter_bytes``
decodes it, as it did with httpx's own transport. Closing a response whose body was not read to the end closes its connection: that is how
the upstream (vLLM) learns that a generation nobody reads can stop. Idle connections are kept
``keepalive_s`` seconds, less than uvicorn's (vLLM's) own 5 s, so a connection is never reused just
as the upstream closes it. ``HTTP_PROXY`` and the like are not read (httpx's client read them): the
upstream is reached directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx

KEEPALIVE_S = 4.0
READ_CHUNK = 64 * 1024


@contextmanager
def _mapped() -> Iterator[None]:
    """aiohttp's exceptions as httpx's (see the module docstring)."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except (
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientPayloadError,
        aiohttp.ClientResponseError,
    ) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
    except aiohttp.ClientError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as httpx reads it; closing releases or drops the connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        response = self._response
        if response.content.at_eof():
            response.release()  # read to the end: the connection goes back to the pool
        else:
            response.close()  # not read to the end: the connection is closed


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (a keep-alive pool of up to ``max_connections``) per transport.

    The session is made on the first request, inside the running event loop (the app factory runs
    outside it). Timeouts come from each request's ``timeout`` extension, as httpx sets it:
    ``connect`` (and ``pool``, the wait for a free connection) and ``read`` (between bytes).
    """

    def __init__(self, *, max_connections: int = 512, keepalive_s: float = KEEPALIVE_S) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_s,
                ttl_dns_cache=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # Only the headers the caller set: no aiohttp User-Agent, Accept or
                # Accept-Encoding of its own.
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                auto_decompress=False,  # httpx.Response decodes
                read_bufsize=READ_CHUNK,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        connect = timeouts.get("connect")
        pool = timeouts.get("pool")
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=timeouts.get("read"),
        )
        # httpx.Request computed Host and Content-Length; aiohttp writes its own from the URL
        # and the body, so they are not passed twice.
        headers = [
            (k, v)
            for k, v in request.headers.multi_items()
            if k not in ("host", "content-length", "transfer-encoding")
        ]
        with _mapped():
            response = await self._client().request(
                request.method,
                str(request.url),
                data=request.content or None,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                compress=None,
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": b""},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
