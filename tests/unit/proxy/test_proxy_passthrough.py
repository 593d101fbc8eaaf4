"""What the proxy must not change: unknown request fields, upstream bytes, status, stream order."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from proxy_fakes import (
    SSE_HEADERS,
    AsgiCall,
    ChunkStream,
    FakeUpstream,
    GatedStream,
    chat_stream_chunks,
    parse_sse,
    proxy_client,
    wait_until,
)

from guards.guard import Guard
from proxy.app import create_app
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio

EXTRAS: dict[str, Any] = {
    "top_k": 20,
    "guided_json": {"type": "object", "properties": {"a": {"type": "integer"}}},
    "chat_template_kwargs": {"enable_thinking": False},
    "logprobs": True,
    "top_logprobs": 2,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "n": 2,
    "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    "vendor_field": [1, 2.5, None, "x"],
}


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


@pytest.mark.parametrize(
    ("prompt", "decision"),
    [
        ("What is the capital of France?", "allow"),
        ("Where does Quill Ashford live these days?", "icul"),
        ("How dangerous is sarin to breathe?", "instruct"),
    ],
)
async def test_unknown_fields_reach_upstream_unchanged(
    guard: Guard, upstream: FakeUpstream, prompt: str, decision: str
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], **EXTRAS}
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.headers["x-nescio-decision"].split(";")[0] == decision
    sent = upstream.last.json()
    if decision == "allow":
        assert sent == body
    else:
        assert without(sent, "messages") == without(body, "messages")
        assert sent["messages"] != body["messages"]


@pytest.mark.parametrize("prompt", ["What is the capital of France?", "Q. Ashford's address?"])
async def test_unknown_completion_fields_reach_upstream_unchanged(
    guard: Guard, upstream: FakeUpstream, prompt: str
) -> None:
    body = {"model": "m", "prompt": prompt, "echo": True, "best_of": 3, **EXTRAS}
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        await client.post("/v1/completions", json=body)
    assert without(upstream.last.json(), "prompt") == without(body, "prompt")


@pytest.mark.parametrize("status", [200, 201, 400, 404, 422, 500, 503])
async def test_upstream_status_body_and_headers_are_relayed(guard: Guard, status: int) -> None:
    raw = b'{"id":  "odd-spacing",\n "nested": {"k": [1, 2]}, "e": "\\u00e9"}'

    async def answer(_: httpx.Request) -> httpx.Response:
        headers = {"content-type": "application/json", "x-request-id": "up-7"}
        return httpx.Response(status, headers=headers, stream=ChunkStream([raw[:10], raw[10:]]))

    body = {"model": "m", "messages": [{"role": "user", "content": "Hello there"}]}
    async with proxy_client(ProxySettings(), FakeUpstream(answer), guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    assert response.content == raw
    assert response.headers["x-request-id"] == "up-7"
    assert response.headers["x-nescio-decision"] == "allow"


async def test_models_listing_is_relayed(upstream: FakeUpstream) -> None:
    async with proxy_client(ProxySettings(), upstream, None) as client:
        response = await client.get("/v1/models")
    assert response.status_code == 200 and response.json()["data"][0]["id"] == "m"
    assert upstream.last.method == "GET" and upstream.last.path == "/v1/models"


def streaming_app(gated: GatedStream, guard: Guard) -> Any:
    """A proxy relaying ``gated``; the output guard is off since it holds text back by design
    (its hold-back is tested in test_proxy_output_guard.py)."""

    async def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE_HEADERS, stream=gated)

    settings = ProxySettings(output_guard=False)
    return create_app(settings, transport=FakeUpstream(answer).transport, guard=guard)


STREAM_BODY = {
    "model": "m",
    "stream": True,
    "messages": [{"role": "user", "content": "Count to three."}],
}


async def test_stream_chunks_reach_the_client_in_order_as_they_arrive(guard: Guard) -> None:
    chunks = chat_stream_chunks("m", ["one", " two", " three"])
    gated = GatedStream(chunks)
    app = streaming_app(gated, guard)
    call = AsgiCall(app, "/v1/chat/completions", STREAM_BODY)
    async with app.router.lifespan_context(app), anyio.create_task_group() as tasks:
        tasks.start_soon(call.run)
        with anyio.fail_after(10):  # a deadlock guard: a buffering proxy never sends chunk 0
            for i, chunk in enumerate(chunks):
                gated.release(i)
                assert await call.next_body() == chunk
                assert gated.produced == i + 1, "the client saw it before later chunks existed"
    parse_sse(b"".join(chunks))


async def test_client_disconnect_closes_the_upstream_stream(guard: Guard) -> None:
    chunks = chat_stream_chunks("m", ["one", " two", " three"])
    gated = GatedStream(chunks)
    app = streaming_app(gated, guard)
    call = AsgiCall(app, "/v1/chat/completions", STREAM_BODY)
    async with app.router.lifespan_context(app), anyio.create_task_group() as tasks:
        tasks.start_soon(call.run)
        with anyio.fail_after(10):
            gated.release(0)
            assert await call.next_body() == chunks[0]
            call.disconnect()
            await wait_until(lambda: gated.closed, what="the upstream stream to be closed")
    assert gated.produced == 1


async def test_a_broken_upstream_stream_ends_with_an_error_event(guard: Guard) -> None:
    first = chat_stream_chunks("m", ["one"])[0]

    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            yield first
            raise httpx.ReadError("connection reset")

    async def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE_HEADERS, stream=Broken())

    async with proxy_client(ProxySettings(), FakeUpstream(answer), guard) as client:
        response = await client.post("/v1/chat/completions", json=STREAM_BODY)
    assert response.content.startswith(first)
    assert response.content.endswith(b"data: [DONE]\n\n")
    assert parse_sse(response.content)[-1]["error"]["type"] == "upstream_error"
