"""The proxy in front of a real vLLM CPU server (SmolLM2-135M-Instruct).

These tests assert protocol structure and policy, never the model's exact words. Generation
is kept short (max_tokens <= 16) because the model runs at ~15 tokens/s on 2 CPU cores; the
disconnect test asks for a long generation on purpose and checks that it is aborted.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
TIMEOUT = httpx.Timeout(120.0, connect=5.0)
DECISION = "x-nescio-decision"
NEUTRAL = "Say hello."


def chat_body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 12,
        "temperature": 0.0,
        **extra,
    }


def sse_events(lines: list[str]) -> tuple[list[dict[str, Any]], bool]:
    """Parse `data:` lines into JSON chunks; report whether the `[DONE]` sentinel came last."""
    payloads = [line[len("data:") :].strip() for line in lines if line.startswith("data:")]
    done = bool(payloads) and payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads if p != "[DONE]"]
    return chunks, done


def stream_chat(url: str, body: dict[str, Any]) -> tuple[httpx.Headers, list[dict[str, Any]], bool]:
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        chunks, done = sse_events(list(resp.iter_lines()))
        return resp.headers, chunks, done


def decision(headers: httpx.Headers) -> tuple[str, dict[str, str]]:
    """Split `X-Nescio-Decision: <action>; key=value; ...` into the action and its fields."""
    action, *fields = (part.strip() for part in headers[DECISION].split(";"))
    return action, dict(field.split("=", 1) for field in fields)


def assert_decision(headers: httpx.Headers, action: str, concept_id: str) -> None:
    got_action, fields = decision(headers)
    assert got_action == action, headers[DECISION]
    assert fields.get("concept") == concept_id, headers[DECISION]
    assert 0.0 <= float(fields["score"]) <= 1.0


def running_requests(vllm_url: str) -> float:
    """Sum of vLLM's `vllm:num_requests_running` gauge over all label sets."""
    text = httpx.get(f"{vllm_url}/metrics", timeout=10).text
    values = re.findall(r"^vllm:num_requests_running(?:\{[^}]*\})? ([0-9.eE+-]+)$", text, re.M)
    if not values:
        pytest.fail("vLLM /metrics has no vllm:num_requests_running gauge")
    return sum(float(v) for v in values)


def test_upstream_vllm_serves_the_converted_model(
    prompts: dict[str, str], vllm_server: str
) -> None:
    """The fixture's vLLM answers a chat directly: conversion kept weights and chat template."""
    models = httpx.get(f"{vllm_server}/v1/models", timeout=TIMEOUT).json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    response = httpx.post(
        f"{vllm_server}/v1/chat/completions",
        json=chat_body(prompts["out_of_scope"]),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in {"stop", "length"}


def test_out_of_scope_chat_gets_the_model_answer(
    prompts: dict[str, str], proxy_server: str
) -> None:
    response = httpx.post(
        f"{proxy_server}/v1/chat/completions",
        json=chat_body(prompts["out_of_scope"]),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert response.headers[DECISION] == "allow"
    body = response.json()
    assert body["model"] == MODEL
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_out_of_scope_stream_carries_chunks_usage_and_done(
    prompts: dict[str, str], proxy_server: str
) -> None:
    body = chat_body(prompts["out_of_scope"], stream=True, stream_options={"include_usage": True})
    headers, chunks, done = stream_chat(proxy_server, body)
    assert headers[DECISION] == "allow"
    assert done, "stream did not end with data: [DONE]"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert text.strip()
    finishes = [c["finish_reason"] for chunk in chunks for c in chunk["choices"]]
    assert [f for f in finishes if f] in (["stop"], ["length"])
    usage_chunks = [chunk for chunk in chunks if chunk.get("usage")]
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["choices"] == []
    assert usage_chunks[0]["usage"]["completion_tokens"] > 0


def test_in_scope_chat_is_refused_with_the_configured_text(
    prompts: dict[str, str], proxy_server: str
) -> None:
    response = httpx.post(
        f"{proxy_server}/v1/chat/completions", json=chat_body(prompts["in_scope"]), timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert_decision(response.headers, "refuse", prompts["concept_id"])
    choice = response.json()["choices"][0]
    assert choice["message"]["content"] == prompts["refusal"]
    assert choice["finish_reason"] == "stop"


def test_in_scope_stream_is_refused(prompts: dict[str, str], proxy_server: str) -> None:
    body = chat_body(prompts["in_scope"], stream=True, stream_options={"include_usage": True})
    headers, chunks, done = stream_chat(proxy_server, body)
    assert_decision(headers, "refuse", prompts["concept_id"])
    assert done
    text = "".join(c["delta"].get("content") or "" for chunk in chunks for c in chunk["choices"])
    assert text == prompts["refusal"]


@pytest.mark.parametrize("policy", ["icul", "instruct"])
def test_in_scope_chat_is_rewritten_and_answered_by_the_model(
    prompts: dict[str, str], proxy_factory: Callable[[str], str], vllm_server: str, policy: str
) -> None:
    url = proxy_factory(policy)
    response = httpx.post(
        f"{url}/v1/chat/completions", json=chat_body(prompts["in_scope"]), timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert_decision(response.headers, policy, prompts["concept_id"])
    body = response.json()
    content = body["choices"][0]["message"]["content"]
    assert content.strip()
    assert content != prompts["refusal"]
    assert body["usage"]["completion_tokens"] > 0
    rewritten = body["usage"]["prompt_tokens"]
    unguarded = httpx.post(
        f"{vllm_server}/v1/chat/completions",
        json=chat_body(prompts["in_scope"], max_tokens=1),
        timeout=TIMEOUT,
    ).json()["usage"]["prompt_tokens"]
    assert rewritten > unguarded, "the forwarded prompt should carry the injected guidance"


def test_completions_pass_through(proxy_server: str) -> None:
    body = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 8}
    response = httpx.post(f"{proxy_server}/v1/completions", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers[DECISION] == "allow"
    payload = response.json()
    assert payload["object"] == "text_completion"
    assert payload["choices"][0]["text"].strip()
    assert payload["usage"]["completion_tokens"] > 0


def test_models_pass_through(proxy_server: str, vllm_server: str) -> None:
    via_proxy = httpx.get(f"{proxy_server}/v1/models", timeout=TIMEOUT)
    direct = httpx.get(f"{vllm_server}/v1/models", timeout=TIMEOUT)
    assert via_proxy.status_code == 200
    assert [m["id"] for m in via_proxy.json()["data"]] == [m["id"] for m in direct.json()["data"]]


def test_client_disconnect_mid_stream_aborts_the_generation(
    prompts: dict[str, str], proxy_server: str, vllm_server: str
) -> None:
    body = chat_body(prompts["out_of_scope"], stream=True, max_tokens=1500, ignore_eos=True)
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream("POST", f"{proxy_server}/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        content_chunks = 0
        while content_chunks < 3:
            line = next(lines)
            content_chunks += line.startswith("data:") and '"content"' in line
        assert running_requests(vllm_server) >= 1, "generation should be running mid-stream"
    deadline = time.monotonic() + 30
    while running_requests(vllm_server) > 0:
        if time.monotonic() > deadline:
            pytest.fail("vLLM still generating 30 s after the client disconnected")
        time.sleep(0.25)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(chat_body("hello " * 3000), id="prompt-over-max-model-len"),
        pytest.param(chat_body(NEUTRAL, max_tokens=100_000), id="max-tokens-too-big"),
    ],
)
def test_upstream_length_error_reaches_client_as_openai_400(
    proxy_server: str, body: dict[str, Any]
) -> None:
    response = httpx.post(f"{proxy_server}/v1/chat/completions", json=body, timeout=TIMEOUT)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert "type" in error


def test_openai_sdk_chat_and_stream_through_the_proxy(
    prompts: dict[str, str], proxy_server: str
) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{proxy_server}/v1", api_key="not-needed", max_retries=0)
    messages = [{"role": "user", "content": prompts["out_of_scope"]}]

    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=8, temperature=0
    )
    assert raw.headers[DECISION] == "allow"
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    usage = None
    for chunk in stream:
        pieces.extend(choice.delta.content or "" for choice in chunk.choices)
        usage = chunk.usage or usage
    assert "".join(pieces).strip()
    assert usage is not None and usage.completion_tokens > 0

    refused = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompts["in_scope"]}], max_tokens=8
    )
    assert refused.choices[0].message.content == prompts["refusal"]
