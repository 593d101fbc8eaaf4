"""The aiohttp transport (proxy/transport.py) against a scripted HTTP server on loopback: what the
upstream reads, keep-alive reuse, streaming as bytes arrive, decoding, and every failure mapped to
the httpx exception (and then the 502 / 504) the proxy has always answered with."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from proxy.errors import UpstreamTimeout, UpstreamUnavailable
from proxy.settings import ProxySettings
from proxy.transport import AiohttpTransport
from proxy.upstream import Upstream

pytestmark = pytest.mark.anyio

Script = Callable[["Conn"], Awaitable[None]]


@dataclass
class Conn:
    """One accepted connection, as the scripted server sees it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    heads: list[bytes]

    async def request(self) -> tuple[bytes, bytes]:
        """The next request's head (kept in ``heads``) and body (``Content-Length`` only)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head, await self.reader.readexactly(length)

    async def answer(self, body: bytes, *headers: str, status: str = "200 OK") -> None:
        lines = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()


@dataclass
class Server:
    url: str
    connections: list[Conn] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[Server]:
    """A server on 127.0.0.1 running ``script`` on every connection."""
    server = Server("")
    tasks: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(reader, writer, server.heads)
        server.connections.append(conn)
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await script(conn)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away: nothing more to script
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def upstream(url: str, read_timeout: float = 30.0) -> Upstream:
    return Upstream(ProxySettings(upstream_url=url, read_timeout=read_timeout))


async def serve_forever(conn: Conn) -> None:
    while True:
        _, body = await conn.request()
        await conn.answer(b'{"echo":' + body + b"}", "content-type: application/json")


async def test_request_as_sent_and_connection_reused() -> None:
    async with scripted(serve_forever) as server:
        client = upstream(server.url)
        for n in range(3):
            response = await client.send(
                "POST", "/v1/chat/completions", content=b'{"n":%d}' % n, headers={"x-a": "b"}
            )
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert await response.aread() == b'{"echo":{"n":%d}}' % n
            await response.aclose()
        await client.aclose()
    assert len(server.connections) == 1  # keep-alive: one connection for all three
    head = server.heads[-1]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    names = [line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:] if line]
    assert sorted(names) == sorted(
        [b"host", b"content-length", b"content-type", b"accept-encoding", b"x-a"]
    )  # nothing of aiohttp's own (User-Agent, Accept), nothing twice
    assert b"content-length: 7" in head.lower()


async def test_stream_released_as_bytes_arrive_and_close_drops_connection() -> None:
    first_read = asyncio.Event()
    closed = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.request()
        head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked"
        conn.writer.write(head.encode() + b"\r\n\r\n" + b"6\r\ndata: \r\n")
        await conn.writer.drain()
        await first_read.wait()
        await conn.reader.read()  # returns b"" once the client closes the connection
        closed.set()

    async with scripted(script) as server:
        client = upstream(server.url)
        response = await client.send("POST", "/v1/completions", content=b"{}")
        chunks = response.aiter_bytes()
        assert await anext(chunks) == b"data: "  # before the stream has ended
        first_read.set()
        await response.aclose()  # not read to the end: the connection must close
        await asyncio.wait_for(closed.wait(), 10)
        await client.aclose()


async def test_gzip_body_is_decoded() -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.answer(gzip.compress(b'{"a":1}'), "content-encoding: gzip")

    async with scripted(script) as server:
        client = upstream(server.url)
        response = await client.send("GET", "/v1/models")
        assert await response.aread() == b'{"a":1}'
        await response.aclose()
        await client.aclose()


async def test_refused_connection_is_a_502() -> None:
    async with scripted(serve_forever) as server:
        url = server.url
    client = upstream(url)  # the listener is closed: nothing accepts on that port now
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.send("GET", "/v1/models")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    await client.aclose()


async def test_close_before_answer_is_a_502() -> None:
    async def script(conn: Conn) -> None:
        await conn.request()  # read it, then hang up without a word

    async with scripted(script) as server:
        client = upstream(server.url)
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.send("POST", "/v1/completions", content=b"{}")
        assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
        await client.aclose()


async def test_no_answer_within_read_timeout_is_a_504() -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await asyncio.Event().wait()  # never answers

    async with scripted(script) as server:
        client = upstream(server.url, read_timeout=0.2)
        with pytest.raises(UpstreamTimeout) as caught:
            await client.send("POST", "/v1/completions", content=b"{}")
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
        await client.aclose()


async def test_body_cut_short_raises_an_httpx_error() -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
        await conn.writer.drain()

    async with scripted(script) as server:
        client = upstream(server.url)
        response = await client.send("POST", "/v1/completions", content=b"{}")
        with pytest.raises(httpx.RemoteProtocolError):
            await response.aread()
        await response.aclose()
        await client.aclose()


async def test_body_stalling_past_read_timeout_raises_read_timeout() -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
        await conn.writer.drain()
        await asyncio.Event().wait()

    async with scripted(script) as server:
        client = upstream(server.url, read_timeout=0.2)
        response = await client.send("POST", "/v1/completions", content=b"{}")
        with pytest.raises(httpx.ReadTimeout):
            await response.aread()
        await response.aclose()
        await client.aclose()


async def test_transport_closes_cleanly_unused() -> None:
    await AiohttpTransport().aclose()  # no session was ever made
