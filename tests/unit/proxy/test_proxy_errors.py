"""Every failure answers in OpenAI's error shape, with the right status, and leaks no secret."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from proxy_fakes import FakeUpstream, proxy_client

from guards.concepts import ConceptList
from guards.decision import Decision
from guards.guard import Guard
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio

CLIENT_KEY = "sk-client-5b1f0e"
ADMIN_KEY = "sk-admin-93c2aa"
UPSTREAM_KEY = "sk-upstream-77d401"
FORGET_FACT = "Quill Ashford lives at 17 Marrowgate Lane in Thornbury."
SECRETS = (CLIENT_KEY, ADMIN_KEY, UPSTREAM_KEY, "Marrowgate", "0161 555 0199")
CHAT = "/v1/chat/completions"


def secret_settings(**extra: Any) -> ProxySettings:
    return ProxySettings(
        api_keys=[CLIENT_KEY], admin_key=ADMIN_KEY, upstream_api_key=UPSTREAM_KEY, **extra
    )


def auth(key: str = CLIENT_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param
    for secret in SECRETS:
        assert secret not in response.text


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"model": "m", "messages": [', None),
        (b"\xff\xfe not utf-8", None),
        (b'["a JSON list, not an object"]', None),
        (b'"a string"', None),
        (b'{"model": "m", "messages": "hello"}', "messages"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m", "messages": [{"content": "hi"}]}', "messages.0.role"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 0}', "n"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "maybe"}',
            "stream",
        ),
    ],
)
async def test_bad_chat_bodies_are_400_naming_the_field(
    guard: Guard, upstream: FakeUpstream, raw: bytes, param: str | None
) -> None:
    async with proxy_client(secret_settings(), upstream, guard, **auth()) as client:
        response = await client.post(CHAT, content=raw)
    assert_openai_error(response, 400, param)
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert upstream.received == []


@pytest.mark.parametrize(
    ("prompt", "param"),
    [([101, 2023, 102], "prompt"), ([[101, 2023]], "prompt"), (None, "prompt")],
)
async def test_unguardable_or_missing_completion_prompts_are_400(
    guard: Guard, upstream: FakeUpstream, prompt: Any, param: str
) -> None:
    body: dict[str, Any] = {"model": "m"} if prompt is None else {"model": "m", "prompt": prompt}
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/completions", json=body)
    assert_openai_error(response, 400, param)
    assert upstream.received == []


async def test_unknown_route_is_404(upstream: FakeUpstream) -> None:
    async with proxy_client(ProxySettings(), upstream, None) as client:
        response = await client.post("/v1/embeddings", json={"input": "x"})
    assert_openai_error(response, 404)
    assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("failure", "status", "kind"),
    [
        (httpx.ConnectError("connection refused"), 502, "upstream_error"),
        (httpx.ReadTimeout("timed out"), 504, "upstream_timeout"),
        (httpx.ConnectTimeout("timed out"), 504, "upstream_timeout"),
    ],
)
@pytest.mark.parametrize("path", [CHAT, "/v1/models"])
async def test_upstream_transport_failures_map_to_502_and_504(
    guard: Guard, failure: Exception, status: int, kind: str, path: str
) -> None:
    async def fail(_: httpx.Request) -> httpx.Response:
        raise failure

    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    async with proxy_client(secret_settings(), FakeUpstream(fail), guard, **auth()) as client:
        if path == CHAT:
            response = await client.post(path, json=body)
        else:
            response = await client.get(path)
    assert_openai_error(response, status)
    assert response.json()["error"]["type"] == kind


async def test_ready_reports_an_unreachable_upstream(guard: Guard) -> None:
    async def fail(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    async with proxy_client(ProxySettings(), FakeUpstream(fail), guard) as client:
        assert (await client.get("/health")).status_code == 200
        ready = await client.get("/ready")
    assert ready.status_code == 503 and ready.json()["upstream"] is False


class FailingDetector:
    """A detector that breaks, with a forget-corpus fact in its exception message."""

    def check(self, turns: Sequence[str], context: Sequence[str] = ()) -> Decision:
        raise RuntimeError(f"index corrupted near {FORGET_FACT}")


@pytest.fixture
def broken_guard(concepts: ConceptList) -> Guard:
    return Guard(concepts, FailingDetector(), "broken")


async def test_guard_failure_fails_closed_by_default(
    broken_guard: Guard, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    async with proxy_client(secret_settings(), upstream, broken_guard, **auth()) as client:
        response = await client.post(CHAT, json=body)
    assert_openai_error(response, 503)
    assert response.json()["error"]["type"] == "guard_unavailable"
    assert upstream.received == []
    assert "RuntimeError" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text


async def test_guard_failure_forwards_flagged_when_fail_open(
    broken_guard: Guard, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    settings = secret_settings(fail_open=True)
    async with proxy_client(settings, upstream, broken_guard, **auth()) as client:
        response = await client.post(CHAT, json=body)
    assert response.status_code == 200
    assert response.headers["x-nescio-decision"] == "error; fail-open"
    assert upstream.last.json() == body
    for secret in SECRETS:
        assert secret not in caplog.text


async def test_no_secret_in_any_error_body_or_log(
    guard: Guard, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad_concept = {"id": "x", "name": "x", "examples": [FORGET_FACT], "policy": FORGET_FACT}
    responses: list[httpx.Response] = []
    async with proxy_client(secret_settings(), upstream, guard) as client:
        chat = {"model": "m", "messages": [{"role": "user", "content": FORGET_FACT}], "n": 0}
        responses.append(await client.post(CHAT, json=chat))
        responses.append(await client.post(CHAT, json=chat, headers=auth()))
        responses.append(await client.post(CHAT, json=chat, headers=auth(ADMIN_KEY)))
        responses.append(await client.get("/admin/concepts", headers=auth()))
        responses.append(
            await client.post("/admin/concepts", json=bad_concept, headers=auth(ADMIN_KEY))
        )
        responses.append(
            await client.post("/admin/concepts", content=FORGET_FACT, headers=auth(ADMIN_KEY))
        )
        responses.append(await client.post("/admin/reload", headers=auth(ADMIN_KEY)))
    assert [r.status_code for r in responses] == [401, 400, 401, 401, 400, 400, 400]
    for response in responses:
        assert_openai_error(response, response.status_code, response.json()["error"]["param"])
    for secret in (*SECRETS, FORGET_FACT):
        assert secret not in caplog.text


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_non_standard_json_numbers_are_400_not_500(
    guard: Guard, upstream: FakeUpstream, constant: str
) -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": %s}'
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post(CHAT, content=raw % constant.encode())
    assert_openai_error(response, 400)
    assert upstream.received == []


class SlowBody(httpx.AsyncByteStream):
    """Headers arrive, then the body read times out."""

    async def __aiter__(self) -> Any:
        yield b'{"id": '
        raise httpx.ReadTimeout("timed out")


async def test_a_timeout_while_reading_the_body_is_504(guard: Guard) -> None:
    async def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=SlowBody())

    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    async with proxy_client(ProxySettings(), FakeUpstream(answer), guard) as client:
        response = await client.post(CHAT, json=body)
    assert_openai_error(response, 504)


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_pass_through_with_their_body(guard: Guard, stream: bool) -> None:
    error = {"object": "error", "message": "max_tokens is too large", "type": "BadRequestError",
             "param": "max_tokens", "code": 400}  # fmt: skip

    async def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=error)

    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
    async with proxy_client(ProxySettings(), FakeUpstream(answer), guard) as client:
        response = await client.post(CHAT, json=body)
    assert response.status_code == 400 and response.json() == error
    assert response.headers["content-type"] == "application/json"
