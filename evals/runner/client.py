"""An async OpenAI-API client for one system under test, with retries and backoff.

Retries connection errors, timeouts, 429 and 5xx with exponential backoff (honouring a
``Retry-After`` header, capped); other 4xx answers are final and come back as an error result,
so one bad item never stops a run. The API key is sent, never stored in results or logs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import httpx

from evals.errors import EndpointError
from evals.metrics.likelihood import AnswerLogprob, answer_span_logprob

Mode = Literal["chat", "completions"]
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
DECISION_HEADER = "x-nescio-decision"


@dataclass(frozen=True, slots=True)
class System:
    """A system under test: a label, its base URL (without /v1) and optionally model and key."""

    name: str
    base_url: str
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str) -> System:
        """``NAME=URL`` or ``NAME=URL#MODEL``."""
        name, sep, rest = text.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise EndpointError(f"--system {text!r}: expected NAME=URL or NAME=URL#MODEL")
        url, _, model = rest.partition("#")
        return cls(name.strip(), url.strip().rstrip("/").removesuffix("/v1"), model or None)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), self.max_delay_s)
            except ValueError:
                pass
        backoff = self.base_delay_s * 2 ** (attempt - 1)
        return float(min(backoff * (0.5 + random.random() / 2), self.max_delay_s))


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    max_tokens: int = 32
    temperature: float = 0.0
    seed: int | None = 0
    mode: Mode = "chat"
    mc_logprobs: bool = True


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request produced: the text, the guard's decision header, or an error."""

    text: str | None
    decision: str | None
    status: int | None
    attempts: int
    finish_reason: str | None = None
    top_logprobs: dict[str, float] | None = None
    error: str | None = None
    answer_logprob: AnswerLogprob | None = None


class SystemClient:
    """Talks to one system; safe to call concurrently."""

    def __init__(
        self,
        system: System,
        config: GenerationConfig,
        *,
        client: httpx.AsyncClient,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.system = system
        self.config = config
        self._client = client
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._model = system.model

    async def model(self) -> str:
        """The configured model, else the first one the server lists."""
        if self._model is None:
            response = await self._send("GET", "/v1/models", None)
            if isinstance(response, str):
                raise EndpointError(f"{self.system.name}: cannot list models: {response}")
            data = response.json().get("data") or []
            if not data:
                raise EndpointError(f"{self.system.name}: /v1/models lists no model")
            self._model = str(data[0]["id"])
        return self._model

    async def ask(self, prompt: str, *, multiple_choice: bool = False) -> Answer:
        body = await self._body(prompt, multiple_choice)
        path = "/v1/chat/completions" if self.config.mode == "chat" else "/v1/completions"
        result = await self._post_retrying(path, body)
        return result if isinstance(result, Answer) else self._answer(*result)

    async def score_answer(self, prompt: str, answer: str) -> Answer:
        """The log-probability the system gives ``answer`` right after the (already templated)
        ``prompt``, through ``/v1/completions`` with ``echo``. ``Answer.answer_logprob`` is None
        when the system answered without prompt log-probabilities (the proxy refused)."""
        body = {
            "model": await self.model(),
            "prompt": prompt + answer,
            "echo": True,
            "logprobs": 1,
            "max_tokens": 1,
            "temperature": 0.0,
        }
        result = await self._post_retrying("/v1/completions", body)
        if isinstance(result, Answer):
            return result
        response, attempts = result
        scored = self._answer(response, attempts)
        if scored.error is not None:
            return scored
        payload = response.json()
        logprobs = payload["choices"][0].get("logprobs")
        usage = payload.get("usage") or {}
        span = None
        if isinstance(logprobs, dict):
            prompt_tokens = usage.get("prompt_tokens", len(logprobs.get("tokens") or []) - 1)
            span = answer_span_logprob(logprobs, len(answer), int(prompt_tokens))
        return replace(scored, answer_logprob=span)

    async def _post_retrying(
        self, path: str, body: dict[str, Any]
    ) -> tuple[httpx.Response, int] | Answer:
        """POST with retries: the 200 response and the attempts it took, or a final error."""
        attempts = 0
        last = "no attempt"
        while attempts < self._retry.attempts:
            attempts += 1
            try:
                response = await self._client.post(
                    self.system.base_url + path, json=body, headers=self._headers()
                )
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}"
                retry_after = None
            else:
                if response.status_code == 200:
                    return response, attempts
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRY_STATUSES:
                    return Answer(
                        None, _decision(response), response.status_code, attempts, error=last
                    )
                retry_after = response.headers.get("retry-after")
            if attempts < self._retry.attempts:
                await self._sleep(self._retry.delay(attempts, retry_after))
        return Answer(None, None, None, attempts, error=f"gave up after {attempts} tries: {last}")

    async def _body(self, prompt: str, multiple_choice: bool) -> dict[str, Any]:
        config = self.config
        body: dict[str, Any] = {
            "model": await self.model(),
            "max_tokens": config.max_tokens,
            "temperature": config.temperature,
        }
        if config.seed is not None:
            body["seed"] = config.seed
        if config.mode == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            if multiple_choice and config.mc_logprobs:
                body |= {"logprobs": True, "top_logprobs": 10}
        else:
            body["prompt"] = prompt
            if multiple_choice and config.mc_logprobs:
                body["logprobs"] = 10
        return body

    def _headers(self) -> dict[str, str]:
        key = self.system.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _send(self, method: str, path: str, body: Any) -> httpx.Response | str:
        try:
            response = await self._client.request(
                method, self.system.base_url + path, json=body, headers=self._headers()
            )
        except httpx.TransportError as exc:
            return type(exc).__name__
        return response if response.status_code == 200 else f"HTTP {response.status_code}"

    def _answer(self, response: httpx.Response, attempts: int) -> Answer:
        try:
            choice = response.json()["choices"][0]
            text = choice["message"]["content"] if "message" in choice else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError):
            return Answer(
                None, _decision(response), 200, attempts, error="malformed completion body"
            )
        return Answer(
            text=text or "",
            decision=_decision(response),
            status=200,
            attempts=attempts,
            finish_reason=choice.get("finish_reason"),
            top_logprobs=_first_token_logprobs(choice.get("logprobs")),
        )


def _decision(response: httpx.Response) -> str | None:
    value = response.headers.get(DECISION_HEADER)
    return None if value is None else str(value)


def _first_token_logprobs(logprobs: Any) -> dict[str, float] | None:
    """Top alternatives of the first generated token, from either API's logprobs shape."""
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if isinstance(content, list) and content:
        tops = content[0].get("top_logprobs") or []
        return {str(t["token"]): float(t["logprob"]) for t in tops if "token" in t}
    top = logprobs.get("top_logprobs")
    if isinstance(top, list) and top and isinstance(top[0], dict):
        return {str(k): float(v) for k, v in top[0].items()}
    return None
