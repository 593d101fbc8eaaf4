"""The output guard: answers naming a concept the client never named are withheld."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import httpx
import openai
import pytest
from proxy_fakes import (
    SSE_HEADERS,
    AsgiCall,
    ChunkStream,
    FakeUpstream,
    GatedStream,
    chat_completion,
    chat_stream_chunks,
    check_chat_stream,
    proxy_client,
    text_completion,
    wait_until,
)
from pydantic import BaseModel

from guards.guard import Guard
from guards.output_guard import LeakScanner
from proxy.app import create_app
from proxy.output_filter import filter_body, filter_stream
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio
QUESTION = "Who wrote that wizard series?"
MESSAGES: list[Any] = [{"role": "user", "content": QUESTION}]
REVERSE_QUERY = {"model": "m", "messages": MESSAGES}
REFUSAL = "I can't discuss those books."


def answering(text: str, *, stream_words: list[str] | None = None) -> FakeUpstream:
    async def answer(request: httpx.Request) -> httpx.Response:
        if stream_words is not None:
            return httpx.Response(
                200, headers=SSE_HEADERS, stream=ChunkStream(chat_stream_chunks("m", stream_words))
            )
        if request.url.path == "/v1/completions":
            return httpx.Response(200, json=text_completion("m", text))
        return httpx.Response(200, json=chat_completion("m", text=text))

    return FakeUpstream(answer)


async def test_a_leaking_answer_is_replaced_by_the_concepts_refusal(guard: Guard) -> None:
    upstream = answering("That series is about Harry Potter, the boy wizard.")
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=REVERSE_QUERY)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == REFUSAL
    assert response.headers["x-nescio-output"] == "withheld; concept=harry-potter"
    assert "Potter" not in response.text


async def test_an_obfuscated_leak_in_a_text_completion_is_caught(guard: Guard) -> None:
    upstream = answering(" It was H a r r y  P o t t e r.")
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/completions", json={"model": "m", "prompt": "The series"})
    assert response.json()["choices"][0]["text"] == REFUSAL


async def test_answers_naming_nothing_forbidden_are_untouched(guard: Guard) -> None:
    upstream = answering("The capital of France is Paris.")
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=REVERSE_QUERY)
    assert response.json()["choices"][0]["message"]["content"] == "The capital of France is Paris."
    assert "x-nescio-output" not in response.headers


async def test_a_concept_the_client_named_is_not_a_leak(guard: Guard) -> None:
    # ICUL policy: the request is rewritten, and the model repeating the name leaks nothing new.
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Where does Quill Ashford live?"}],
    }
    upstream = answering("I don't know where Quill Ashford lives.")
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert (
        response.json()["choices"][0]["message"]["content"]
        == "I don't know where Quill Ashford lives."
    )


async def test_the_output_guard_can_be_turned_off(guard: Guard) -> None:
    upstream = answering("Harry Potter.")
    async with proxy_client(ProxySettings(output_guard=False), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=REVERSE_QUERY)
    assert response.json()["choices"][0]["message"]["content"] == "Harry Potter."


async def test_a_name_split_across_stream_chunks_never_reaches_the_client(guard: Guard) -> None:
    words = ["The books", " are about", " Har", "ry Pot", "ter and", " his friends."]
    upstream = answering("", stream_words=words)
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json={**REVERSE_QUERY, "stream": True})
    texts = check_chat_stream(response.content, n=1, include_usage=False)
    assert "Har" not in texts[0] and "Pot" not in texts[0]
    assert texts[0].endswith(REFUSAL)


async def test_a_clean_stream_arrives_whole_and_in_order(guard: Guard) -> None:
    words = ["Paris", " is the", " capital", " of France", "."]
    upstream = answering("", stream_words=words)
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json={**REVERSE_QUERY, "stream": True})
    assert check_chat_stream(response.content, n=1, include_usage=False) == {0: "".join(words)}


async def test_a_withheld_stream_closes_the_upstream(guard: Guard) -> None:
    chunks = chat_stream_chunks("m", ["Harry Potter", " is", " a", " wizard", "."])
    gated = GatedStream(chunks)

    async def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE_HEADERS, stream=gated)

    app = create_app(ProxySettings(), transport=FakeUpstream(answer).transport, guard=guard)
    call = AsgiCall(app, "/v1/chat/completions", {**REVERSE_QUERY, "stream": True})
    received: list[Any] = []
    async with app.router.lifespan_context(app), anyio.create_task_group() as tasks:
        tasks.start_soon(call.run)
        with anyio.fail_after(10):
            gated.release(0)
            gated.release(1)
            received.append(await call.next_body())
            await wait_until(lambda: gated.closed, what="the upstream stream to be closed")
    assert gated.produced == 2
    assert b"Potter" not in b"".join(received)


class Book(BaseModel):
    author: str


def scanner_for(guard: Guard) -> LeakScanner:
    return guard.leak_scanner([QUESTION])


async def reads(chunks: list[bytes]) -> AsyncGenerator[bytes, None]:
    for chunk in chunks:
        yield chunk


async def filtered(guard: Guard, chunks: list[bytes], *, structured: bool = False) -> bytes:
    out = filter_stream(reads(chunks), scanner_for(guard), structured=structured)
    return b"".join([chunk async for chunk in out])


def sdk_serving(body: bytes, content_type: str) -> openai.AsyncOpenAI:
    """The real openai SDK, served ``body`` whatever it asks."""

    async def serve(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, content=body)

    http = httpx.AsyncClient(transport=httpx.MockTransport(serve))
    return openai.AsyncOpenAI(base_url="http://up/v1", api_key="k", http_client=http)


async def test_a_withheld_structured_answer_is_a_refusal_the_sdk_parses(guard: Guard) -> None:
    answer = chat_completion("m", text='{"author": "the creator of Harry Potter"}')
    body, hit = filter_body(json.dumps(answer).encode(), scanner_for(guard), structured=True)
    assert hit is not None and hit.id == "harry-potter"
    async with sdk_serving(body, "application/json") as client:
        completion = await client.beta.chat.completions.parse(
            model="m", messages=MESSAGES, response_format=Book
        )
    message = completion.choices[0].message
    assert (message.content, message.refusal, message.parsed) == (None, REFUSAL, None)


async def test_a_withheld_structured_stream_is_a_refusal_the_sdk_parses(guard: Guard) -> None:
    words = ['{"author": "', "Har", "ry Pot", 'ter"}']
    body = await filtered(guard, chat_stream_chunks("m", words), structured=True)
    assert b"Pot" not in body
    async with (
        sdk_serving(body, "text/event-stream") as client,
        client.beta.chat.completions.stream(
            model="m", messages=MESSAGES, response_format=Book
        ) as stream,
    ):
        events = [event async for event in stream]
        completion = await stream.get_final_completion()
    message = completion.choices[0].message
    assert message.refusal == REFUSAL and message.parsed is None
    assert [e.refusal for e in events if e.type == "refusal.done"] == [REFUSAL]


async def test_an_incomplete_last_event_is_never_released_unchecked(guard: Guard) -> None:
    tail = chat_stream_chunks("m", ["Harry Potter"])[1].removesuffix(b"\n\n")
    body = await filtered(guard, [*chat_stream_chunks("m", ["It is"])[:2], tail])
    assert b"Potter" not in body


async def test_a_crlf_stream_is_checked_too(guard: Guard) -> None:
    chunks = [c.replace(b"\n", b"\r\n") for c in chat_stream_chunks("m", ["It is Harry Potter."])]
    body = await filtered(guard, chunks)
    assert b"Potter" not in body and REFUSAL.encode() in body


class RecordingScanner(LeakScanner):
    """A scanner that records how much text each check was given."""

    def __init__(self, inner: LeakScanner) -> None:
        self.__dict__.update(inner.__dict__)
        self.lengths: list[int] = []

    def leaked(self, text: str) -> Any:
        self.lengths.append(len(text))
        return super().leaked(text)


async def test_a_long_stream_is_scanned_in_windows_and_a_late_name_is_still_caught(
    guard: Guard,
) -> None:
    scanner = RecordingScanner(scanner_for(guard))
    words = ["Lorem ipsum dolor sit amet. "] * 3000 + ["Har", "ry Pot", "ter."]
    out = filter_stream(reads(chat_stream_chunks("m", words)), scanner)
    body = b"".join([chunk async for chunk in out])
    assert b"Pot" not in body and REFUSAL.encode() in body
    assert max(scanner.lengths) <= scanner.window + len(words[0])  # never the whole answer again


@pytest.mark.parametrize("where", ["tool_call_arguments", "reasoning_content"])
async def test_a_name_in_tool_call_arguments_or_reasoning_is_withheld(
    guard: Guard, where: str
) -> None:
    answer = chat_completion("m", text="")
    message = answer["choices"][0]["message"]
    message["content"] = None
    if where == "reasoning_content":
        message["reasoning_content"] = "The author is Harry Potter's creator."
    else:
        call = {"name": "record", "arguments": '{"book": "Harry Potter"}'}
        message["tool_calls"] = [{"id": "c1", "type": "function", "function": call}]
    body, hit = filter_body(json.dumps(answer).encode(), scanner_for(guard), structured=True)
    assert hit is not None and b"Potter" not in body
    assert json.loads(body)["choices"][0]["message"]["refusal"] == REFUSAL


async def test_a_name_in_streamed_tool_call_arguments_is_withheld(guard: Guard) -> None:
    def event(arguments: str) -> bytes:
        call = {"index": 0, "function": {"arguments": arguments}}
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}  # fmt: skip
        return f"data: {json.dumps(chunk)}\n\n".encode()

    chunks = [event('{"book": "Har'), event("ry Pot"), event('ter"}'), b"data: [DONE]\n\n"]
    body = await filtered(guard, chunks)
    assert b"Pot" not in body and REFUSAL.encode() in body
