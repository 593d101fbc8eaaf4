"""Test doubles for the proxy's unit tests: a recording fake upstream, a hand-driven byte stream,
an in-process client, a raw ASGI driver that can disconnect, and strict OpenAI stream checks.

Nothing here touches the network: the upstream is an ``httpx.MockTransport`` and the proxy is
called in-process with its lifespan run.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import httpx
from fastapi import FastAPI
from openai.types import Completion, CompletionChoice
from openai.types.chat import ChatCompletionChunk

from guards.guard import Guard
from proxy.app import create_app
from proxy.settings import ProxySettings

Responder = Callable[[httpx.Request], Awaitable[httpx.Response]]
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "x-upstream": "vllm"}


@dataclass
class Received:
    """One request as the upstream saw it."""

    method: str
    path: str
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def chat_completion(model: str, n: int = 1, text: str = "Paris.") -> dict[str, Any]:
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }


def text_completion(model: str, text: str = " Paris.") -> dict[str, Any]:
    return {
        "id": "cmpl-upstream",
        "object": "text_completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def chat_stream_chunks(model: str, words: list[str]) -> list[bytes]:
    """A vLLM-like chat stream: role delta, one delta per word, a finish chunk, [DONE]."""
    base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": model}
    deltas: list[tuple[dict[str, str], str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": w}, None) for w in words]
    deltas.append(({}, "stop"))
    chunks = [
        sse({**base, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": f}]})
        for d, f in deltas
    ]
    return [*chunks, sse("[DONE]")]


class FakeUpstream:
    """Records every request; answers like vLLM unless ``responder`` is set."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.received: list[Received] = []
        self.responder = responder
        self.transport = httpx.MockTransport(self._handle)

    @property
    def last(self) -> Received:
        return self.received[-1]

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.received.append(Received(request.method, request.url.path, request.headers, body))
        if self.responder is not None:
            return await self.responder(request)
        return default_answer(request.method, request.url.path, body)


def default_answer(method: str, path: str, body: bytes) -> httpx.Response:
    if method == "GET" and path == "/v1/models":
        return httpx.Response(
            200, json={"object": "list", "data": [{"id": "m", "object": "model"}]}
        )
    request = json.loads(body)
    model = str(request.get("model") or "m")
    if request.get("stream"):
        stream = ChunkStream(chat_stream_chunks(model, ["Pa", "ris."]))
        return httpx.Response(200, headers=SSE_HEADERS, stream=stream)
    if path == "/v1/chat/completions":
        return httpx.Response(200, json=chat_completion(model, int(request.get("n", 1))))
    return httpx.Response(200, json=text_completion(model))


class ChunkStream(httpx.AsyncByteStream):
    """An upstream body arriving in several network reads, as a real stream does.

    (``httpx.Response(content=...)`` would pre-read the body, which no real upstream does.)
    """

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


@dataclass
class GatedStream(httpx.AsyncByteStream):
    """An upstream body sent chunk by chunk, each after the test releases it; records its close.

    ``release(i)`` lets chunk ``i`` out; ``produced`` counts chunks handed to the proxy, so a test
    can see what the client got while the upstream has not yet produced the rest.
    """

    chunks: list[bytes]
    produced: int = 0
    closed: bool = False
    _gates: list[anyio.Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._gates = [anyio.Event() for _ in self.chunks]

    def release(self, index: int) -> None:
        self._gates[index].set()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for gate, chunk in zip(self._gates, self.chunks, strict=True):
            await gate.wait()
            self.produced += 1
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


@asynccontextmanager
async def proxy_client(
    settings: ProxySettings, upstream: FakeUpstream, guard: Guard | None, **headers: str
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired to a freshly built proxy app, its lifespan running."""
    app = create_app(settings, transport=upstream.transport, guard=guard)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://proxy", headers=headers
        ) as client:
            yield client


class AsgiCall:
    """One HTTP request driven by hand, so a test reads body parts as they are sent and can
    disconnect mid-response (httpx's ASGITransport buffers the whole body, hiding both)."""

    def __init__(self, app: FastAPI, path: str, body: dict[str, Any]) -> None:
        self._app = app
        self._path = path
        self._body = json.dumps(body).encode()
        self._disconnect = anyio.Event()
        self._requested = False
        send, self.messages = anyio.create_memory_object_stream[dict[str, Any]](100)
        self._send = send

    async def _receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send_message(self, message: Any) -> None:
        await self._send.send(dict(message))

    def disconnect(self) -> None:
        self._disconnect.set()

    async def run(self) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": self._path,
            "raw_path": self._path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json")],
            "server": ("proxy", 80),
            "client": ("127.0.0.1", 1234),
        }
        async with self._send:
            await self._app(scope, self._receive, self._send_message)

    async def next_body(self) -> bytes:
        """The next non-empty body part (skipping the response start)."""
        async for message in self.messages:
            if message["type"] == "http.response.body" and message.get("body"):
                return bytes(message["body"])
        raise AssertionError("response ended without another body part")


def parse_sse(body: bytes) -> list[Any]:
    """Every event of an SSE body, each a lone ``data:`` line; JSON decoded, ``[DONE]`` kept.

    Fails unless every event is well formed, ``[DONE]`` comes once and last.
    """
    text = body.decode()
    assert text.endswith("\n\n"), "stream must end with a blank line"
    events: list[Any] = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, f"malformed SSE event {block!r}"
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else json.loads(data))
    assert events and events[-1] == "[DONE]" and events.count("[DONE]") == 1
    return events[:-1]


def check_chat_stream(body: bytes, *, n: int, include_usage: bool) -> dict[int, str]:
    """Validate a chat stream chunk by chunk; returns the text of each choice index."""
    texts: dict[int, str] = {}
    finished: set[int] = set()
    chunks = [ChatCompletionChunk.model_validate(e, strict=True) for e in parse_sse(body)]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == (1 if include_usage else 0)
    if include_usage:
        assert chunks[-1].usage is not None and chunks[-1].choices == []
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk"
        assert len({c.id for c in chunks}) == 1
        for choice in chunk.choices:
            assert choice.index not in finished, "a choice went on after its finish chunk"
            if choice.finish_reason is not None:
                assert choice.delta.content in (None, ""), "finish_reason must have its own chunk"
                finished.add(choice.index)
            else:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert finished == set(range(n)) == set(texts)
    return texts


class StreamCompletionChoice(CompletionChoice):
    """The openai SDK types ``finish_reason`` as always set, but OpenAI and vLLM stream ``null``
    until the last chunk of a choice; only that field is relaxed."""

    finish_reason: Literal["stop", "length", "content_filter"] | None  # type: ignore[assignment]


class StreamCompletion(Completion):
    choices: list[StreamCompletionChoice]  # type: ignore[assignment]


def check_completion_stream(body: bytes, *, choices: int, include_usage: bool) -> dict[int, str]:
    texts: dict[int, str] = {}
    finished: set[int] = set()
    chunks = [StreamCompletion.model_validate(e, strict=True) for e in parse_sse(body)]
    assert len([c for c in chunks if c.usage is not None]) == (1 if include_usage else 0)
    if include_usage:
        assert chunks[-1].usage is not None and chunks[-1].choices == []
    for chunk in chunks:
        assert chunk.object == "text_completion"
        for choice in chunk.choices:
            assert choice.index not in finished
            if choice.finish_reason is not None:
                assert choice.text == ""
                finished.add(choice.index)
            else:
                texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert finished == set(range(choices)) == set(texts)
    return texts


async def wait_until(predicate: Callable[[], bool], *, what: str, limit_s: float = 10.0) -> None:
    """Poll ``predicate`` (a deadlock guard, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await anyio.sleep(0.01)
