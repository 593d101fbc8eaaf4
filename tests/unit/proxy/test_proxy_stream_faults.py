"""Upstream stream faults end the client's stream with one error event and ``[DONE]``; well-formed
streams pass byte for byte, each event as soon as it is complete."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import openai
import pytest
from proxy_fakes import (
    SSE_HEADERS,
    AsgiCall,
    FakeUpstream,
    GatedStream,
    chat_stream_chunks,
    parse_sse,
    proxy_client,
    wait_until,
)

from guards.guard import Guard
from proxy import relay, sse
from proxy.app import create_app
from proxy.output_filter import filter_stream
from proxy.relay import EventChecker, relay_stream
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio
PROMPT = "Count to three."
BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
WORDS = ["one", " two", " three"]
EVENTS = chat_stream_chunks("m", WORDS)  # role, three words, finish, [DONE]
GUARDED = pytest.mark.parametrize("output_guard", [False, True], ids=["relay", "output-guard"])


@dataclass
class ScriptedStream(httpx.AsyncByteStream):
    """An upstream body: ``chunks`` as separate reads, then ``error`` if set; records how many
    reads were taken and whether the proxy closed it."""

    chunks: list[bytes]
    error: Exception | None = None
    produced: int = 0
    closed: bool = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.produced += 1
            yield chunk
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


async def relayed(
    stream: ScriptedStream, guard: Guard, *, output_guard: bool = False
) -> httpx.Response:
    async def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE_HEADERS, stream=stream)

    settings = ProxySettings(output_guard=output_guard)
    async with proxy_client(settings, FakeUpstream(answer), guard) as client:
        return await client.post("/v1/chat/completions", json=BODY)


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def ends_with_error(body: bytes, relayed_events: list[bytes]) -> dict[str, Any]:
    """Check ``body`` is ``relayed_events``, one error event and ``[DONE]``; the error's body."""
    assert body.startswith(b"".join(relayed_events))
    events = parse_sse(body)
    assert len(events) == len(relayed_events) + 1
    error: dict[str, Any] = events[-1]["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] is None
    return error


def logged_once(caplog: pytest.LogCaptureFixture, code: str) -> None:
    [record] = problems(caplog)
    assert record.name == "proxy.relay" and code in record.getMessage()
    assert not any(word.strip() in record.getMessage() for word in WORDS)


@GUARDED
@pytest.mark.parametrize(
    ("exc", "type_", "code"),
    [
        (httpx.ReadError("connection reset"), "upstream_error", "stream_broken"),
        (httpx.RemoteProtocolError("peer closed"), "upstream_error", "stream_broken"),
        (httpx.ReadTimeout("timed out"), "upstream_timeout", "stream_timeout"),
    ],
)
async def test_an_upstream_that_drops_or_times_out_mid_stream_is_reported_then_done(
    guard: Guard,
    caplog: pytest.LogCaptureFixture,
    output_guard: bool,
    exc: Exception,
    type_: str,
    code: str,
) -> None:
    stream = ScriptedStream(EVENTS[:3], error=exc)
    response = await relayed(stream, guard, output_guard=output_guard)
    error = ends_with_error(response.content, EVENTS[:3])
    assert (error["type"], error["code"]) == (type_, code)
    assert stream.closed
    logged_once(caplog, code)


@GUARDED
async def test_an_upstream_that_ends_without_done_is_reported_then_done(
    guard: Guard, caplog: pytest.LogCaptureFixture, output_guard: bool
) -> None:
    stream = ScriptedStream(EVENTS[:-1])
    response = await relayed(stream, guard, output_guard=output_guard)
    error = ends_with_error(response.content, EVENTS[:-1])
    assert (error["type"], error["code"]) == ("upstream_error", "stream_incomplete")
    assert stream.closed
    logged_once(caplog, "stream_incomplete")


async def test_an_incomplete_last_event_is_not_relayed(
    guard: Guard, caplog: pytest.LogCaptureFixture
) -> None:
    stream = ScriptedStream([*EVENTS[:2], EVENTS[2][:-1]])  # its blank line never came
    response = await relayed(stream, guard)
    assert ends_with_error(response.content, EVENTS[:2])["code"] == "stream_incomplete"
    logged_once(caplog, "stream_incomplete")


@GUARDED
@pytest.mark.parametrize(
    "malformed",
    [
        b'data: {"id": "chatcmpl-s", "choices": [\n\n',
        b"data: [1, 2]\n\n",
        b'data: "[DONE]"\n\n',
        b"data: [DONE] \n\n",
        b"data: \x80\x81\n\n",
    ],
    ids=["truncated-json", "array", "string", "done-with-space", "not-utf8"],
)
async def test_a_malformed_event_ends_the_stream_and_nothing_after_it_is_relayed(
    guard: Guard, caplog: pytest.LogCaptureFixture, output_guard: bool, malformed: bytes
) -> None:
    later = EVENTS[3:]
    stream = ScriptedStream([*EVENTS[:2], malformed + EVENTS[2], *later])
    response = await relayed(stream, guard, output_guard=output_guard)
    error = ends_with_error(response.content, EVENTS[:2])
    assert (error["type"], error["code"]) == ("upstream_error", "malformed_event")
    assert stream.closed and stream.produced == 3, "the upstream was read past the fault"
    logged_once(caplog, "malformed_event")


def rechunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


WELL_FORMED: dict[str, list[bytes]] = {
    "event-per-read": EVENTS,
    "one-read": [b"".join(EVENTS)],
    "7-byte-reads": rechunked(b"".join(EVENTS), 7),
    "comments-event-and-id-lines": [
        b": keep-alive\n\n",
        b"event: message\nid: 1\n" + EVENTS[0],
        b"retry: 100\n\n" + EVENTS[1],
        *EVENTS[2:],
    ],
    "crlf": rechunked(b"".join(e.replace(b"\n", b"\r\n") for e in EVENTS), 5),
    "multi-line-data": [b'data: {"id": "x", "choices": []\ndata: }\n\n', *EVENTS],
}


@GUARDED
@pytest.mark.parametrize("chunks", WELL_FORMED.values(), ids=WELL_FORMED.keys())
async def test_a_well_formed_stream_passes_byte_for_byte(
    guard: Guard, caplog: pytest.LogCaptureFixture, output_guard: bool, chunks: list[bytes]
) -> None:
    stream = ScriptedStream(chunks)
    response = await relayed(stream, guard, output_guard=output_guard)
    assert response.content == b"".join(chunks)
    assert stream.closed and problems(caplog) == []


async def test_what_follows_done_is_read_but_not_relayed(
    guard: Guard, caplog: pytest.LogCaptureFixture
) -> None:
    stream = ScriptedStream([*EVENTS, b'data: {"late": true}\n\n'], error=httpx.ReadError("x"))
    response = await relayed(stream, guard)
    assert response.content == b"".join(EVENTS)
    assert stream.produced == len(stream.chunks), "the body was not drained for connection reuse"
    assert stream.closed and problems(caplog) == []


def app_for(gated: GatedStream, guard: Guard) -> Any:
    async def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE_HEADERS, stream=gated)

    settings = ProxySettings(output_guard=False)
    return create_app(settings, transport=FakeUpstream(answer).transport, guard=guard)


async def test_an_event_split_across_reads_is_released_when_its_last_read_arrives(
    guard: Guard,
) -> None:
    first, split = EVENTS[0], len(EVENTS[1]) // 2
    gated = GatedStream([first + EVENTS[1][:split], EVENTS[1][split:], *EVENTS[2:]])
    app = app_for(gated, guard)
    call = AsgiCall(app, "/v1/chat/completions", BODY)
    async with app.router.lifespan_context(app), anyio.create_task_group() as tasks:
        tasks.start_soon(call.run)
        with anyio.fail_after(10):
            gated.release(0)
            assert await call.next_body() == first
            gated.release(1)
            assert await call.next_body() == EVENTS[1]
            assert gated.produced == 2
            for i in range(2, len(gated.chunks)):
                gated.release(i)


@dataclass
class SlowClose(GatedStream):
    """A body whose close yields to the event loop, as a real connection's close does."""

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.closed = True


@pytest.mark.parametrize("stream_type", [GatedStream, SlowClose])
async def test_a_client_disconnect_closes_the_upstream_and_logs_no_error(
    guard: Guard, caplog: pytest.LogCaptureFixture, stream_type: type[GatedStream]
) -> None:
    gated = stream_type(list(EVENTS))
    app = app_for(gated, guard)
    call = AsgiCall(app, "/v1/chat/completions", BODY)
    async with app.router.lifespan_context(app), anyio.create_task_group() as tasks:
        tasks.start_soon(call.run)
        with anyio.fail_after(10):
            gated.release(0)
            assert await call.next_body() == EVENTS[0]
            call.disconnect()
            await wait_until(lambda: gated.closed, what="the upstream stream to be closed")
    assert gated.produced == 1 and problems(caplog) == []


async def test_the_openai_sdk_raises_on_the_error_event(guard: Guard) -> None:
    stream = ScriptedStream(EVENTS[:3], error=httpx.ReadError("connection reset"))

    async def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE_HEADERS, stream=stream)

    app = create_app(ProxySettings(), transport=FakeUpstream(answer).transport, guard=guard)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http,
    ):
        client = openai.AsyncOpenAI(base_url="http://proxy/v1", api_key="k", http_client=http)
        chunks = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        with pytest.raises(openai.APIError, match="broke off"):
            async for _ in chunks:
                pass


async def test_the_output_guard_passes_the_relays_error_ending_once(guard: Guard) -> None:
    stream = ScriptedStream(EVENTS[:3], error=httpx.ReadError("connection reset"))
    response = httpx.Response(200, headers=SSE_HEADERS, stream=stream)
    scanner = guard.leak_scanner([PROMPT])
    assert scanner.active
    body = b"".join([chunk async for chunk in filter_stream(relay_stream(response), scanner)])
    assert ends_with_error(body, EVENTS[:3])["code"] == "stream_broken"
    assert body.count(sse.DONE) == 1 and stream.closed


def fed(checker: EventChecker, chunks: list[bytes]) -> bytes:
    return b"".join(checker.feed(chunk) for chunk in chunks)


@pytest.mark.parametrize("size", [1, 2, 3, 64])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_events_are_found_whatever_the_reads_and_line_endings(size: int, newline: bytes) -> None:
    data = b"".join(EVENTS).replace(b"\n", newline)
    checker = EventChecker()
    assert fed(checker, rechunked(data, size)) == data
    assert checker.done and checker.fault is None


@pytest.mark.parametrize(
    ("event", "done"),
    [
        (b"data: [DONE]\n\n", True),
        (b"data:[DONE]\n\n", True),
        (sse.encode({"choices": [{"index": 0, "delta": {"content": "[DONE]"}}]}), False),
    ],
)
def test_done_is_recognised_exactly(event: bytes, done: bool) -> None:
    checker = EventChecker()
    assert checker.feed(event) == event
    assert checker.done is done and checker.fault is None


def test_an_event_past_the_size_limit_is_a_fault() -> None:
    checker = EventChecker(max_event_bytes=64)
    assert checker.feed(EVENTS[0] + b"data: " + b"x" * 40) == EVENTS[0]
    assert checker.fault is None
    assert checker.feed(b"x" * 40) == b""
    assert checker.fault == relay.OVERSIZED
    assert checker.feed(b"\n\n") == b""
