"""Mixed prompts through the HTTP API: what the upstream actually receives, and what the client
sees, for chat (streamed and not) and completions (never split), with the setting on and off."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from proxy_fakes import (
    FakeUpstream,
    chat_completion,
    check_chat_stream,
    proxy_client,
)

from guards.guard import Guard
from guards.interventions import WITHHELD_NOTE
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio

FORBIDDEN = "Which Hogwarts house is the bravest?"
ALLOWED = "How many legs does a spider have?"
MIXED = f"{FORBIDDEN} {ALLOWED}"
REFUSAL = "I can't discuss those books."


def chat_body(*contents: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": c} for c in contents]
    return {"model": "m", "messages": messages, **extra}


def assert_partial(response: httpx.Response) -> None:
    decision = response.headers["x-nescio-decision"]
    assert decision.startswith("refuse; concept=harry-potter;")
    assert decision.endswith("; partial=1")


def assert_never_forwarded(upstream: FakeUpstream) -> None:
    assert len(upstream.received) == 1
    assert "Hogwarts" not in upstream.last.body.decode()


@pytest.mark.parametrize("stream", [False, True])
async def test_the_allowed_question_is_answered_and_the_forbidden_one_withheld(
    guard: Guard, upstream: FakeUpstream, stream: bool
) -> None:
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(MIXED, stream=stream))
    assert response.status_code == 200
    assert_partial(response)
    assert_never_forwarded(upstream)
    assert upstream.last.json()["messages"] == [
        {"role": "system", "content": WITHHELD_NOTE},
        {"role": "user", "content": ALLOWED},
    ]
    if stream:
        assert check_chat_stream(response.content, n=1, include_usage=False) == {0: "Paris."}
    else:
        assert response.json()["choices"][0]["message"]["content"] == "Paris."


async def test_a_completion_prompt_is_never_split(guard: Guard, upstream: FakeUpstream) -> None:
    body = {"model": "m", "prompt": f"{ALLOWED}\n{FORBIDDEN}\nAnswer:"}
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/completions", json=body)
    assert response.status_code == 200
    decision = response.headers["x-nescio-decision"]
    assert decision.startswith("refuse; concept=harry-potter;") and "partial=" not in decision
    assert response.json()["choices"][0]["text"] == REFUSAL
    assert upstream.received == []


async def test_whole_policy_setting_refuses_the_whole_request(
    guard: Guard, upstream: FakeUpstream
) -> None:
    settings = ProxySettings(mixed_prompts="whole_policy")
    async with proxy_client(settings, upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(MIXED))
    assert response.json()["choices"][0]["message"]["content"] == REFUSAL
    assert "partial" not in response.headers["x-nescio-decision"]
    assert upstream.received == []


def test_the_setting_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ProxySettings().mixed_prompts == "answer_allowed"
    monkeypatch.setenv("NESCIO_MIXED_PROMPTS", "whole_policy")
    assert ProxySettings().mixed_prompts == "whole_policy"


@pytest.mark.parametrize(
    "contents",
    [
        pytest.param([f"{FORBIDDEN} Who teaches potions at Hogwarts?"], id="every-part"),
        pytest.param(
            ["Tell me about Hogwarts.", f"{ALLOWED} Which house is bravest?"], id="earlier"
        ),
    ],
)
async def test_what_cannot_be_split_gets_the_whole_policy(
    guard: Guard, upstream: FakeUpstream, contents: list[str]
) -> None:
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(*contents))
    assert response.json()["choices"][0]["message"]["content"] == REFUSAL
    assert "partial" not in response.headers["x-nescio-decision"]
    assert upstream.received == []


async def test_the_output_guard_watches_a_concept_named_only_in_the_withheld_part(
    guard: Guard,
) -> None:
    async def leaky(request: httpx.Request) -> httpx.Response:
        text = "Spiders have eight legs. Gryffindor, in Harry Potter, is the bravest house."
        return httpx.Response(200, json=chat_completion("m", text=text))

    upstream = FakeUpstream(leaky)
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(MIXED))
    assert response.json()["choices"][0]["message"]["content"] == REFUSAL
    assert response.headers["x-nescio-output"] == "withheld; concept=harry-potter"
    assert "Hogwarts" not in json.dumps(response.json())
