"""OpenAI request models, validated loosely and never used to re-serialise.

Models keep unknown fields (``extra="allow"``) and check only what the proxy relies on. The proxy
forwards the client's original JSON object, so vLLM extras (``top_k``, ``guided_json``,
``chat_template_kwargs`` ...) reach the upstream byte-for-byte equivalent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.errors import InvalidRequest


class OpenAIModel(BaseModel):
    """Strict types for the fields the proxy reads (``"stream": "yes"`` is a 400, not a stream)."""

    model_config = ConfigDict(extra="allow", strict=True)


class ChatMessage(OpenAIModel):
    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(OpenAIModel):
    include_usage: bool = False


class ChatCompletionRequest(OpenAIModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=128)


class CompletionRequest(OpenAIModel):
    model: str | None = None
    prompt: str | list[str] | list[int] | list[list[int]]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=128)


Request = TypeVar("Request", bound=OpenAIModel)


DEFAULT_MAX_DEPTH = 64
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def loads_json(raw: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Strict JSON, a 400 on anything else: no NaN/Infinity (they could not be forwarded), no
    nesting deeper than ``max_depth``, no unpaired UTF-16 surrogate escape (``"\\ud800"``, which
    decodes to a string nothing downstream can encode)."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise _too_deep(max_depth) from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and rejected constants
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    _check_tree(value, max_depth, surrogates=_SURROGATE_ESCAPE.search(raw) is not None)
    return value


def _check_tree(value: Any, max_depth: int, *, surrogates: bool) -> None:
    """Depth first, iteratively (a recursive walk is what deep nesting attacks)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise _too_deep(max_depth)
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if surrogates and isinstance(key, str) and _SURROGATE.search(key):
                    raise _bad_unicode()
                stack.append((child, depth + 1))
        elif surrogates and isinstance(item, str) and _SURROGATE.search(item):
            raise _bad_unicode()


def _too_deep(max_depth: int) -> InvalidRequest:
    return InvalidRequest(
        f"request body is nested deeper than {max_depth} levels", code="json_too_deep"
    )


def _bad_unicode() -> InvalidRequest:
    return InvalidRequest(
        "request body contains an unpaired UTF-16 surrogate escape (e.g. \\ud800); send "
        "valid Unicode",
        code="invalid_unicode",
    )


def dumps_json(body: Mapping[str, Any]) -> bytes:
    """A body as forwarded upstream: compact UTF-8 JSON (what httpx's ``json=`` wrote)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def parse_body(
    raw: bytes, model: type[Request], max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[dict[str, Any], Request]:
    """Decode a JSON object and validate it; 400 in OpenAI's shape on any problem."""
    body = loads_json(raw, max_depth)
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    try:
        return body, model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{param}: {first['msg']}", param=param) from exc
