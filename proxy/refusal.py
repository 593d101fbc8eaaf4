"""Refusal answers in OpenAI's response shapes: JSON, and a well-formed SSE stream.

The upstream model is not called for a refusal, so usage reports zero tokens. A chat request
that asked for structured output (:func:`wants_structured`) is refused in ``message.refusal``
(``delta.refusal`` when streamed) with ``content`` null, as OpenAI refuses one: SDK helpers that
parse the content as JSON (``client.beta.chat.completions.parse``, LangChain's
``with_structured_output``) then report a refusal instead of failing to parse the text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from proxy import sse
from proxy.protocol import ChatCompletionRequest, CompletionRequest

ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
STRUCTURED_FORMATS = frozenset({"json_schema", "json_object"})
NAMED_TOOL_TYPES = frozenset({"function", "custom"})
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


def wants_structured(body: Mapping[str, Any]) -> bool:
    """Whether a chat request asked for machine-readable output, which a refusal must not fill
    with prose: a ``response_format`` of type ``json_schema`` or ``json_object``, or ``tools`` with
    a ``tool_choice`` that forces a call (``"required"``, a named function or custom tool, or
    ``allowed_tools`` in mode ``required``)."""
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in STRUCTURED_FORMATS:
        return True
    choice = body.get("tool_choice")
    if not body.get("tools"):
        return False
    if choice == "required":
        return True
    if not isinstance(choice, Mapping):
        return False
    allowed = choice.get("allowed_tools")
    if choice.get("type") == "allowed_tools" and isinstance(allowed, Mapping):
        return allowed.get("mode") == "required"
    return choice.get("type") in NAMED_TOOL_TYPES


def _structured(request: ChatCompletionRequest) -> bool:
    return wants_structured(request.model_dump(include={"response_format", "tools", "tool_choice"}))


def _stream_end(request: Request, base: dict[str, Any]) -> list[bytes]:
    """The optional usage chunk, then ``[DONE]``."""
    end = []
    if request.stream_options and request.stream_options.include_usage:
        end.append(sse.encode({**base, "choices": [], "usage": dict(ZERO_USAGE)}))
    return [*end, sse.DONE]


def chat_refusal(request: ChatCompletionRequest, text: str) -> dict[str, Any]:
    if _structured(request):
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": text}
    else:
        message = {"role": "assistant", "content": text}
    choices = [
        {
            "index": i,
            "message": dict(message),
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
    """Role delta, content (or refusal) delta, finish chunk per choice, optional usage chunk, then
    [DONE]."""
    base = _envelope(request, "chatcmpl", "chat.completion.chunk")
    if _structured(request):
        opening: dict[str, Any] = {"role": "assistant", "content": None, "refusal": ""}
        answer = {"refusal": text}
    else:
        opening, answer = {"role": "assistant", "content": ""}, {"content": text}
    for i in range(request.n):
        for delta, finish in ((opening, None), (answer, None), ({}, "stop")):
            choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
            yield sse.encode({**base, "choices": [choice]})
    for chunk in _stream_end(request, base):
        yield chunk


async def completion_refusal_stream(request: CompletionRequest, text: str) -> AsyncIterator[bytes]:
    """Text chunk, finish chunk per choice, optional usage chunk, then [DONE]."""
    base = _envelope(request, "cmpl", "text_completion")
    for i in range(_completion_choices(request)):
        for piece, finish in ((text, None), ("", "stop")):
            choice = {"index": i, "text": piece, "logprobs": None, "finish_reason": finish}
            yield sse.encode({**base, "choices": [choice]})
    for chunk in _stream_end(request, base):
        yield chunk
