"""The inference routes' lean path (proxy/inference.py): served without FastAPI's machinery, with
the same answers; the pure relay forwards the client's bytes; no thread hop for the key check."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from fastapi import FastAPI
from proxy_fakes import FakeUpstream, proxy_client

from guards.guard import Guard
from proxy.auth import require_admin, require_client
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio

RAW = b'{ "model": "m",\n  "messages": [{"role": "user", "content": "Hi \\u00e9"}], "top_p": 1.0 }'


@pytest.fixture
def no_fastapi(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """FastAPI's own ``__call__`` records the paths it is asked to serve."""
    entered: list[str] = []
    original = FastAPI.__call__

    async def recording(self: FastAPI, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            entered.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", recording)
    return entered


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_inference_routes_bypass_fastapi(
    no_fastapi: list[str], upstream: FakeUpstream, path: str
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "prompt": "Hi"}
    if path == "/v1/completions":
        del body["messages"]
    async with proxy_client(ProxySettings(), upstream, None) as client:
        answered = await client.post(path, json=body)
        models = await client.get("/v1/models")
    assert answered.status_code == 200 and models.status_code == 200
    assert no_fastapi == ["/v1/models"]


async def test_errors_on_the_lean_path_keep_openai_shape(upstream: FakeUpstream) -> None:
    settings = ProxySettings(api_keys=["k"])
    async with proxy_client(settings, upstream, None) as client:
        unauthorized = await client.post("/v1/chat/completions", json={})
        bad = await client.post(
            "/v1/chat/completions", content=b"{", headers={"authorization": "Bearer k"}
        )
        wrong_method = await client.get("/v1/completions", headers={"authorization": "Bearer k"})
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["code"] == "invalid_api_key"
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"] == {
        "message": "Method Not Allowed",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert upstream.received == []


async def test_relay_forwards_the_clients_bytes(upstream: FakeUpstream) -> None:
    async with proxy_client(ProxySettings(), upstream, None) as client:
        response = await client.post(
            "/v1/chat/completions", content=RAW, headers={"content-type": "application/json"}
        )
    assert response.status_code == 200
    assert upstream.last.body == RAW
    assert upstream.last.headers["content-type"] == "application/json"


async def test_guarded_body_is_reserialised(guard: Guard, upstream: FakeUpstream) -> None:
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", content=RAW)
    assert response.headers["x-nescio-decision"] == "allow"
    assert upstream.last.body == (
        b'{"model":"m","messages":[{"role":"user","content":"Hi \xc3\xa9"}],"top_p":1.0}'
    )


def test_key_checks_run_on_the_event_loop() -> None:
    # FastAPI runs a plain ``def`` dependency in its thread pool: a thread hop per request.
    assert inspect.iscoroutinefunction(require_client)
    assert inspect.iscoroutinefunction(require_admin)
