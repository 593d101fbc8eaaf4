"""Metrics and access logs: one line per request with the decision and latencies, never text;
Prometheus counters by route, decision and status; the concept list's version."""

from __future__ import annotations

import logging

import pytest
from proxy_fakes import FakeUpstream, proxy_client

from guards.guard import Guard
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio
CHAT = "/v1/chat/completions"
SECRET_QUESTION = "Which Hogwarts house is the bravest?"


def chat(text: str) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


async def test_one_access_line_per_request_with_decision_and_no_text(
    guard: Guard, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nescio.access")
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        await client.post(CHAT, json=chat("What is the capital of France?"))
        await client.post(CHAT, json=chat(SECRET_QUESTION))
        await client.post(CHAT, content=b"{not json")
    lines = [r.getMessage() for r in caplog.records if r.name == "nescio.access"]
    assert len(lines) == 3
    assert lines[0].startswith("access route=/v1/chat/completions status=200 decision=allow ")
    assert "upstream_ms=" in lines[0] and "upstream_ms=-" not in lines[0]
    assert "status=200 decision=refuse " in lines[1] and "upstream_ms=-" in lines[1]
    assert "status=400 decision=- guard_ms=-" in lines[2]
    assert all("Hogwarts" not in line and "France" not in line for line in lines)


async def test_metrics_count_requests_by_route_decision_and_status(
    guard: Guard, upstream: FakeUpstream
) -> None:
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        await client.post(CHAT, json=chat("What is the capital of France?"))
        await client.post(CHAT, json=chat(SECRET_QUESTION))
        await client.get("/no/such/route/with/a/long/name")
        text = (await client.get("/metrics")).text
    for sample in (
        'nescio_requests_total{decision="allow",route="/v1/chat/completions",status="200"} 1.0',
        'nescio_requests_total{decision="refuse",route="/v1/chat/completions",status="200"} 1.0',
        'nescio_requests_total{decision="-",route="other",status="404"} 1.0',
        "nescio_guard_seconds_count 2.0",
        "nescio_upstream_seconds_count 1.0",
        "nescio_in_flight_requests 1.0",  # the scrape itself
        f"nescio_concepts {len(guard.concepts.concepts)}.0",
        f'nescio_concept_list_info{{version="{guard.concepts.content_hash()[:16]}"}} 1.0',
    ):
        assert sample in text, sample
    assert "Hogwarts" not in text and "harry-potter" not in text
