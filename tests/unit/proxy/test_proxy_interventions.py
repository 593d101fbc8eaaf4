"""Each policy's outcome through the HTTP API, streamed and not, in OpenAI's exact shapes."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion
from proxy_fakes import (
    FakeUpstream,
    chat_stream_chunks,
    check_chat_stream,
    check_completion_stream,
    proxy_client,
)

from guards.guard import Guard
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio

REFUSE_PROMPT = "Which Hogwarts house is the bravest?"
ICUL_PROMPT = "Where does Quill Ashford live these days?"
INSTRUCT_PROMPT = "How dangerous is sarin to breathe?"
ALLOWED_PROMPT = "What is the capital of France?"
REFUSAL = "I can't discuss those books."
SECRETS = ("Marrowgate", "0161 555 0199")


def chat_body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": prompt}], **extra}


@pytest.mark.parametrize("n", [1, 3])
async def test_refused_chat_is_a_valid_completion_and_never_reaches_upstream(
    guard: Guard, upstream: FakeUpstream, n: int
) -> None:
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(REFUSE_PROMPT, n=n))
    assert response.status_code == 200
    completion = ChatCompletion.model_validate(response.json(), strict=True)
    assert [c.index for c in completion.choices] == list(range(n))
    assert all(
        c.message.content == REFUSAL and c.finish_reason == "stop" for c in completion.choices
    )
    assert completion.usage is not None and completion.usage.total_tokens == 0
    assert response.headers["x-nescio-decision"].startswith("refuse; concept=harry-potter;")
    assert upstream.received == []


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("include_usage", [True, False])
async def test_refused_chat_stream_is_well_formed(
    guard: Guard, upstream: FakeUpstream, n: int, include_usage: bool
) -> None:
    body = chat_body(REFUSE_PROMPT, stream=True, n=n)
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    texts = check_chat_stream(response.content, n=n, include_usage=include_usage)
    assert texts == dict.fromkeys(range(n), REFUSAL)
    assert upstream.received == []


async def test_refused_completion_has_a_choice_per_prompt_and_n(
    guard: Guard, upstream: FakeUpstream
) -> None:
    body = {"model": "m", "prompt": [REFUSE_PROMPT, ALLOWED_PROMPT], "n": 2}
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/completions", json=body)
    completion = Completion.model_validate(response.json(), strict=True)
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    assert {c.text for c in completion.choices} == {REFUSAL}
    assert upstream.received == []


@pytest.mark.parametrize("include_usage", [True, False])
async def test_refused_completion_stream_is_well_formed(
    guard: Guard, upstream: FakeUpstream, include_usage: bool
) -> None:
    body: dict[str, Any] = {"model": "m", "prompt": REFUSE_PROMPT, "stream": True, "n": 2}
    body["stream_options"] = {"include_usage": include_usage}
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/completions", json=body)
    texts = check_completion_stream(response.content, choices=2, include_usage=include_usage)
    assert texts == {0: REFUSAL, 1: REFUSAL}


@pytest.mark.parametrize("stream", [False, True])
async def test_icul_prepends_demonstrations_without_forget_corpus_facts(
    guard: Guard, upstream: FakeUpstream, stream: bool
) -> None:
    body = chat_body(ICUL_PROMPT, stream=stream)
    body["messages"].insert(0, {"role": "system", "content": "Be brief."})
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.headers["x-nescio-decision"].startswith("icul; concept=quill-ashford;")
    sent = upstream.last.json()
    messages = sent["messages"]
    assert messages[0] == body["messages"][0], "the system prompt stays first"
    assert messages[-1] == body["messages"][-1], "the client's turn stays last"
    demos = messages[1:-1]
    assert len(demos) >= 2 and [m["role"] for m in demos[:2]] == ["user", "assistant"]
    assert not any(s in upstream.last.body.decode() for s in SECRETS)
    assert sent["model"] == "m" and sent.get("stream", False) == stream
    if stream:
        assert response.content == b"".join(chat_stream_chunks("m", ["Pa", "ris."]))
        check_chat_stream(response.content, n=1, include_usage=False)
    else:
        ChatCompletion.model_validate(response.json(), strict=True)


@pytest.mark.parametrize("system", [None, "Be brief."])
async def test_instruct_puts_the_guardrail_in_the_system_prompt(
    guard: Guard, upstream: FakeUpstream, system: str | None
) -> None:
    body = chat_body(INSTRUCT_PROMPT)
    if system is not None:
        body["messages"].insert(0, {"role": "system", "content": system})
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["x-nescio-decision"].startswith("instruct; concept=nerve-agents;")
    messages = upstream.last.json()["messages"]
    assert messages[0]["role"] == "system" and "never learned" in messages[0]["content"]
    if system is not None:
        assert messages[0]["content"].endswith(system) and len(messages) == 2
    else:
        assert messages[1:] == body["messages"]
    ChatCompletion.model_validate(response.json(), strict=True)


@pytest.mark.parametrize(
    ("prompt", "policy"), [(ICUL_PROMPT, "icul"), (INSTRUCT_PROMPT, "instruct")]
)
async def test_rewrites_prefix_a_completion_prompt(
    guard: Guard, upstream: FakeUpstream, prompt: str, policy: str
) -> None:
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/completions", json={"model": "m", "prompt": prompt})
    assert response.headers["x-nescio-decision"].startswith(f"{policy};")
    sent = upstream.last.json()["prompt"]
    assert sent.endswith(prompt) and len(sent) > len(prompt)
    assert not any(s in sent for s in SECRETS)
    Completion.model_validate(response.json(), strict=True)


async def test_allowed_request_is_forwarded_unchanged(guard: Guard, upstream: FakeUpstream) -> None:
    body = chat_body(ALLOWED_PROMPT)
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.headers["x-nescio-decision"] == "allow"
    assert upstream.last.json() == body
    ChatCompletion.model_validate(response.json(), strict=True)


async def test_a_forbidden_question_split_across_turns_is_still_caught(
    guard: Guard, upstream: FakeUpstream
) -> None:
    body = chat_body("Tell me about that wizard school.")
    body["messages"] += [
        {"role": "assistant", "content": "Which one?"},
        {"role": "user", "content": "Hogwarts."},
    ]
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.json()["choices"][0]["message"]["content"] == REFUSAL
