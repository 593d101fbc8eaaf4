"""No 5xx from client input: the hostile-traffic fuzzer's requests, in-process, at CI size.

The app runs with the session's real Guard and an echo upstream (``httpx.MockTransport``: the
answer is the body received), called through ``httpx.ASGITransport`` on one event loop kept for
the module, so the lifespan runs once. Hypothesis is derandomized (CI must be deterministic),
without deadlines (a guard check's time varies with the machine) and without an example
database. ``benchmarks/hostile_traffic.py --fuzz-cases N`` runs the same strategies against a
real ``nescio serve`` at any size.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from evals.hostile.fuzz import FuzzCase, fuzz_cases
from guards.guard import Guard
from proxy.app import create_app
from proxy.settings import ProxySettings

ADMIN_KEY = "fuzz-admin-key"
FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _choice(chat: bool, text: str, finish: str | None) -> dict[str, Any]:
    part: dict[str, Any] = {"content": text} if text or finish is None else {}
    answer = {"delta": part} if chat else {"text": text}
    return {"index": 0, "finish_reason": finish, **answer}


async def echo(request: httpx.Request) -> httpx.Response:
    """The upstream: answers with the body it received, streamed when asked."""
    if request.method == "GET":
        return httpx.Response(200, json={"object": "list", "data": [{"id": "echo"}]})
    raw = await request.aread()
    chat = request.url.path.endswith("/chat/completions")
    text = raw.decode()
    envelope: dict[str, Any] = {"id": "e", "created": 0, "model": "echo"}
    if json.loads(raw).get("stream"):
        events = [{**envelope, "object": "chunk", "choices": [_choice(chat, text, None)]},
                  {**envelope, "object": "chunk", "choices": [_choice(chat, "", "stop")]}]  # fmt: skip
        sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=sse)
    answer: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    answer.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    return httpx.Response(200, json={**envelope, "object": "completion", "choices": [answer]})


class InProcessProxy:
    """The proxy app on its own event loop, lifespan entered once; ``send`` runs one request."""

    def __init__(self, guard: Guard) -> None:
        settings_ = ProxySettings(upstream_url="http://upstream", admin_key=ADMIN_KEY)
        self.app = create_app(settings_, transport=httpx.MockTransport(echo), guard=guard)
        self.loop = asyncio.new_event_loop()
        self.lifespan: AbstractAsyncContextManager[Any] = self.app.router.lifespan_context(self.app)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://proxy", timeout=60.0
        )

    def __enter__(self) -> InProcessProxy:
        self.loop.run_until_complete(self.lifespan.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()

    def send(self, case: FuzzCase) -> httpx.Response:
        request = self.client.request(
            case.method, case.path, content=case.content, headers=case.headers
        )
        return self.loop.run_until_complete(request)


@pytest.fixture(scope="module")
def proxy(guard: Guard) -> Iterator[InProcessProxy]:
    with InProcessProxy(guard) as running:
        yield running


@FUZZ
@given(case=fuzz_cases(ADMIN_KEY))
def test_no_request_gets_a_5xx(proxy: InProcessProxy, case: FuzzCase) -> None:
    response = proxy.send(case)
    assert response.status_code < 500, (
        f"{response.status_code} {response.text[:300]} for {case.shown()}"
    )


@settings(FUZZ, max_examples=150)
@given(case=fuzz_cases(ADMIN_KEY, kinds=("admin",)))
def test_no_admin_request_gets_a_5xx(proxy: InProcessProxy, case: FuzzCase) -> None:
    response = proxy.send(case)
    assert response.status_code < 500, (
        f"{response.status_code} {response.text[:300]} for {case.shown()}"
    )
    assert "root:" not in response.text  # no server file is ever read back
