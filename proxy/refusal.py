"""Refusal answers in OpenAI's response shapes: JSON, and a well-formed SSE stream.

The upstream model is not called for a refusal, so usage reports zero tokens.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from proxy.protocol import ChatCompletionRequest, CompletionRequest

ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def chat_refusal(request: ChatCompletionRequest, text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-nescio-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model or "nescio",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for i in range(request.n)
        ],
        "usage": dict(ZERO_USAGE),
    }


def completion_refusal(request: CompletionRequest, text: str) -> dict[str, Any]:
    prompts = 1 if isinstance(request.prompt, str) else max(1, len(request.prompt))
    return {
        "id": f"cmpl-nescio-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": request.model or "nescio",
        "choices": [
            {"index": i, "text": text, "logprobs": None, "finish_reason": "stop"}
            for i in range(request.n * prompts)
        ],
        "usage": dict(ZERO_USAGE),
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


async def chat_refusal_stream(request: ChatCompletionRequest, text: str) -> AsyncIterator[bytes]:
    """Role delta, content delta, finish chunk per choice, optional usage chunk, then [DONE]."""
    base = {
        "id": f"chatcmpl-nescio-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.model or "nescio",
    }
    for i in range(request.n):
        for delta, finish in (
            ({"role": "assistant", "content": ""}, None),
            ({"content": text}, None),
            ({}, "stop"),
        ):
            choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
            yield _sse({**base, "choices": [choice]})
    if request.stream_options and request.stream_options.include_usage:
        yield _sse({**base, "choices": [], "usage": dict(ZERO_USAGE)})
    yield b"data: [DONE]\n\n"


async def completion_refusal_stream(request: CompletionRequest, text: str) -> AsyncIterator[bytes]:
    base = {
        "id": f"cmpl-nescio-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": request.model or "nescio",
    }
    prompts = 1 if isinstance(request.prompt, str) else max(1, len(request.prompt))
    for i in range(request.n * prompts):
        yield _sse(
            {
                **base,
                "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": None}],
            }
        )
        yield _sse(
            {
                **base,
                "choices": [{"index": i, "text": "", "logprobs": None, "finish_reason": "stop"}],
            }
        )
    if request.stream_options and request.stream_options.include_usage:
        yield _sse({**base, "choices": [], "usage": dict(ZERO_USAGE)})
    yield b"data: [DONE]\n\n"
