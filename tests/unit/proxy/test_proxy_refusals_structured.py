"""Refusals of structured-output requests come in ``message.refusal``, which the openai SDK's
parse helpers report as a refusal instead of failing to parse the text as JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from proxy_fakes import FakeUpstream, check_chat_stream, parse_sse, proxy_client
from pydantic import BaseModel

from guards.guard import Guard
from proxy.app import create_app
from proxy.refusal import wants_structured
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio
REFUSE_PROMPT = "Which Hogwarts house is the bravest?"
REFUSAL = "I can't discuss those books."
MESSAGES: list[Any] = [{"role": "user", "content": REFUSE_PROMPT}]
TOOLS = [{"type": "function", "function": {"name": "house", "parameters": {"type": "object"}}}]
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "house", "schema": {"type": "object"}, "strict": True},
}


class House(BaseModel):
    name: str


@pytest.mark.parametrize(
    ("fields", "structured"),
    [
        ({"response_format": JSON_SCHEMA}, True),
        ({"response_format": {"type": "json_object"}}, True),
        ({"response_format": {"type": "text"}}, False),
        ({"tools": TOOLS, "tool_choice": "required"}, True),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "f"}}}, True),
        ({"tools": TOOLS, "tool_choice": {"type": "custom", "custom": {"name": "f"}}}, True),
        (
            {
                "tools": TOOLS,
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {"mode": "required", "tools": []},
                },
            },
            True,
        ),
        (
            {
                "tools": TOOLS,
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {"mode": "auto", "tools": []},
                },
            },
            False,
        ),
        ({"tools": TOOLS, "tool_choice": "auto"}, False),
        ({"tools": TOOLS}, False),
        ({"tool_choice": "required"}, False),
        ({"response_format": "json_object"}, False),
        ({}, False),
    ],
)
def test_structured_output_is_json_formats_or_a_forced_tool_call(
    fields: dict[str, Any], structured: bool
) -> None:
    assert wants_structured({"model": "m", "messages": MESSAGES, **fields}) is structured


@asynccontextmanager
async def sdk(guard: Guard, upstream: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real openai SDK, talking to the proxy in-process."""
    app = create_app(ProxySettings(), transport=upstream.transport, guard=guard)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http,
    ):
        yield openai.AsyncOpenAI(base_url="http://proxy/v1", api_key="k", http_client=http)


async def test_the_sdk_parses_a_refused_response_format_as_a_refusal(
    guard: Guard, upstream: FakeUpstream
) -> None:
    async with sdk(guard, upstream) as client:
        completion = await client.beta.chat.completions.parse(
            model="m", messages=MESSAGES, response_format=House
        )
    message = completion.choices[0].message
    assert message.refusal == REFUSAL
    assert message.content is None and message.parsed is None
    assert completion.choices[0].finish_reason == "stop"
    assert upstream.received == []


async def test_the_sdk_parses_a_refused_forced_tool_call_as_a_refusal(
    guard: Guard, upstream: FakeUpstream
) -> None:
    async with sdk(guard, upstream) as client:
        completion = await client.beta.chat.completions.parse(
            model="m",
            messages=MESSAGES,
            tools=[openai.pydantic_function_tool(House)],
            tool_choice={"type": "function", "function": {"name": "House"}},
        )
    message = completion.choices[0].message
    assert message.refusal == REFUSAL and message.tool_calls is None


async def test_the_sdk_streams_a_refused_response_format_as_a_refusal(
    guard: Guard, upstream: FakeUpstream
) -> None:
    async with (
        sdk(guard, upstream) as client,
        client.beta.chat.completions.stream(
            model="m", messages=MESSAGES, response_format=House
        ) as stream,
    ):
        events = [event async for event in stream]
        completion = await stream.get_final_completion()
    message = completion.choices[0].message
    assert message.refusal == REFUSAL
    assert message.content is None and message.parsed is None
    assert [e.refusal for e in events if e.type == "refusal.done"] == [REFUSAL]
    assert not [e for e in events if e.type.startswith("content.")]


@pytest.mark.parametrize("include_usage", [False, True])
async def test_a_refused_structured_stream_has_refusal_deltas_for_every_choice(
    guard: Guard, upstream: FakeUpstream, include_usage: bool
) -> None:
    body = {
        "model": "m",
        "messages": MESSAGES,
        "stream": True,
        "n": 2,
        "response_format": JSON_SCHEMA,
        "stream_options": {"include_usage": include_usage},
    }
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    chunks = [
        ChatCompletionChunk.model_validate(e, strict=True) for e in parse_sse(response.content)
    ]
    refusals: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            assert choice.delta.content is None
            refusals[choice.index] = refusals.get(choice.index, "") + (choice.delta.refusal or "")
    assert refusals == {0: REFUSAL, 1: REFUSAL}
    assert [c.choices[0].finish_reason for c in chunks if c.choices].count("stop") == 2
    assert (chunks[-1].usage is not None) is include_usage


async def test_a_refused_structured_completion_has_a_refusal_in_every_choice(
    guard: Guard, upstream: FakeUpstream
) -> None:
    body = {"model": "m", "messages": MESSAGES, "n": 2, "tools": TOOLS, "tool_choice": "required"}
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    completion = ChatCompletion.model_validate(response.json(), strict=True)
    assert [(c.message.content, c.message.refusal) for c in completion.choices] == [
        (None, REFUSAL),
        (None, REFUSAL),
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_plain_request_is_still_refused_in_content(
    guard: Guard, upstream: FakeUpstream, stream: bool
) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": stream, "tools": TOOLS}
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    if stream:
        assert check_chat_stream(response.content, n=1, include_usage=False) == {0: REFUSAL}
    else:
        assert response.json()["choices"][0]["message"] == {
            "role": "assistant",
            "content": REFUSAL,
        }
