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
Request = ChatCompletionRequest | CompletionRequest


def _envelope(request: Request, id_prefix: str, object_: str) -> dict[str, Any]:
    """The fields every response object and stream chunk of one refusal shares."""
    return {
        "id": f"{id_prefix}-nescio-{uuid.uuid4().hex}",
        "object": object_,
        "created": int(time.time()),
        "model": request.model or "nescio",
    }


def _completion_choices(request: CompletionRequest) -> int:
    """OpenAI answers ``n`` choices per prompt of a batched (list) prompt."""
    prompts = 1 if isinstance(request.prompt, str) else max(1, len(request.prompt))
    return request.n * prompts


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _stream_end(request: Request, base: dict[str, Any]) -> list[bytes]:
    """The optional usage chunk, then ``[DONE]``."""
    end = []
    if request.stream_options and request.stream_options.include_usage:
        end.append(_sse({**base, "choices": [], "usage": dict(ZERO_USAGE)}))
    return [*end, b"data: [DONE]\n\n"]


def chat_refusal(request: ChatCompletionRequest, text: str) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": "stop",
        }
        for i in range(request.n)
    ]
    envelope = _envelope(request, "chatcmpl", "chat.completion")
    return {**envelope, "choices": choices, "usage": dict(ZERO_USAGE)}


def completion_refusal(request: CompletionRequest, text: str) -> dict[str, Any]:
    choices = [
        {"index": i, "text": text, "logprobs": None, "finish_reason": "stop"}
        for i in range(_completion_choices(request))
    ]
    envelope = _envelope(request, "cmpl", "text_completion")
    return {**envelope, "choices": choices, "usage": dict(ZERO_USAGE)}


async def chat_refusal_stream(request: ChatCompletionRequest, text: str) -> AsyncIterator[bytes]:
    """Role delta, content delta, finish chunk per choice, optional usage chunk, then [DONE]."""
    base = _envelope(request, "chatcmpl", "chat.completion.chunk")
    for i in range(request.n):
        for delta, finish in (
            ({"role": "assistant", "content": ""}, None),
            ({"content": text}, None),
            ({}, "stop"),
        ):
            choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
            yield _sse({**base, "choices": [choice]})
    for chunk in _stream_end(request, base):
        yield chunk


async def completion_refusal_stream(request: CompletionRequest, text: str) -> AsyncIterator[bytes]:
    """Text chunk, finish chunk per choice, optional usage chunk, then [DONE]."""
    base = _envelope(request, "cmpl", "text_completion")
    for i in range(_completion_choices(request)):
        for piece, finish in ((text, None), ("", "stop")):
            choice = {"index": i, "text": piece, "logprobs": None, "finish_reason": finish}
            yield _sse({**base, "choices": [choice]})
    for chunk in _stream_end(request, base):
        yield chunk
