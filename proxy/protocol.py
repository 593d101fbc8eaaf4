"""OpenAI request models, validated loosely and never used to re-serialise.

Models keep unknown fields (``extra="allow"``) and check only what the proxy relies on. The proxy
forwards the client's original JSON object, so vLLM extras (``top_k``, ``guided_json``,
``chat_template_kwargs`` ...) reach the upstream byte-for-byte equivalent.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.errors import InvalidRequest


class OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="allow")


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

    def prompt_texts(self) -> list[str]:
        """The prompt as text; token-id prompts cannot be guarded and are refused with a 400."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        if all(isinstance(p, str) for p in self.prompt):
            return [str(p) for p in self.prompt]
        raise InvalidRequest(
            "token-id prompts cannot be checked by the guard; send the prompt as text",
            param="prompt",
            code="unguardable_prompt",
        )


Request = TypeVar("Request", bound=OpenAIModel)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def loads_json(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity, which could not be forwarded); a 400 on anything else."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and rejected constants
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc


def parse_body(raw: bytes, model: type[Request]) -> tuple[dict[str, Any], Request]:
    """Decode a JSON object and validate it; 400 in OpenAI's shape on any problem."""
    body = loads_json(raw)
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    try:
        return body, model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{param}: {first['msg']}", param=param) from exc
