"""`nescio serve --workers 2` as a real process tree over loopback, in front of the echo upstream:
an admin API change made through one worker is enforced by every worker, and one scrape of
``/metrics`` counts the requests of all of them. No vLLM needed."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from evals.hostile.servers import EchoUpstream, ProxyServer

ADMIN = {"authorization": "Bearer sk-admin"}
DRAGONS: dict[str, Any] = {
    "id": "dragons",
    "name": "dragons",
    "aliases": ["Smaug"],
    "policy": "refuse",
    "refusal": "No dragons here.",
}
ASK = {"model": "echo", "messages": [{"role": "user", "content": "Tell me about Smaug."}]}
WAIT_S = 180.0  # bounds on waiting (guard builds on a shared CPU), never speed requirements
MAX_REQUESTS = 400


def workers(proxy: ProxyServer) -> set[str]:
    return set(re.findall(r"Started server process \[(\d+)\]", proxy.log()))


def served(proxy: ProxyServer, decision: str) -> Counter[str]:
    """Chat requests per worker pid with ``decision``, from the access lines."""
    pattern = rf"\[(\d+)\] nescio\.access: access route=/v1/chat/completions status=200 decision={decision} "
    return Counter(re.findall(pattern, proxy.log()))


def versions(client: httpx.Client) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        pid: float(value)
        for pid, value in re.findall(r'nescio_concept_list_version\{pid="(\d+)"\} (\S+)', text)
    }


def counted(client: httpx.Client, decision: str) -> float:
    text = client.get("/metrics").text
    pattern = (
        r"nescio_requests_total\{decision=\"" + decision + r"\",route=\"/v1/chat/completions\","
        r"status=\"200\"\} (\S+)"
    )
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def fresh(url: str) -> httpx.Client:
    """One connection per request (``connection: close``), so the kernel picks a worker each time."""
    return httpx.Client(base_url=url, headers={"connection": "close"}, timeout=60, trust_env=False)


def test_admin_change_reaches_every_worker_and_metrics_sum_them(tmp_path: Path) -> None:
    env = {"NESCIO_WORKERS": "2", "NESCIO_ADMIN_KEY": "sk-admin", "NESCIO_SYNC_INTERVAL": "0.1"}
    with (
        EchoUpstream() as upstream,
        ProxyServer(
            None, upstream.url, env=env, log_path=tmp_path / "proxy.log", startup_timeout=WAIT_S
        ) as proxy,
        fresh(proxy.url) as client,
    ):
        deadline = time.monotonic() + WAIT_S
        while len(pids := workers(proxy)) < 2:
            assert time.monotonic() < deadline, f"two workers did not start:\n{proxy.log_tail()}"
            time.sleep(0.1)
        for _ in range(MAX_REQUESTS):  # every worker serves, unguarded, before the change
            assert client.post("/v1/chat/completions", json=ASK).status_code == 200
            if set(served(proxy, "unguarded")) == pids:
                break
        assert set(served(proxy, "unguarded")) == pids

        put = client.put("/admin/concepts", json={"concepts": [DRAGONS]}, headers=ADMIN)
        assert put.status_code == 200, put.text
        while versions(client) != dict.fromkeys(pids, 1.0):
            assert time.monotonic() < deadline, f"workers at {versions(client)}, want 1 each"
            time.sleep(0.2)

        sent = 0
        while set(served(proxy, "refuse")) != pids or min(served(proxy, "refuse").values()) < 3:
            assert sent < MAX_REQUESTS, f"refusals per worker: {served(proxy, 'refuse')}"
            answer = client.post("/v1/chat/completions", json=ASK)
            sent += 1
            assert answer.status_code == 200
            assert answer.headers["x-nescio-decision"].startswith("refuse; concept=dragons")
        assert counted(client, "refuse") == sent  # summed over both workers
        unguarded = sum(served(proxy, "unguarded").values())
        assert counted(client, "unguarded") == unguarded


@pytest.mark.parametrize("count", [1, 2])
def test_sigterm_stops_every_worker(tmp_path: Path, count: int) -> None:
    env = {"NESCIO_WORKERS": str(count), "NESCIO_SHUTDOWN_GRACE": "2"}
    with EchoUpstream() as upstream:
        proxy = ProxyServer(None, upstream.url, env=env, log_path=tmp_path / "proxy.log")
        proxy.start()
        stopped = proxy.terminate(timeout=60)
        assert not stopped.killed, proxy.log_tail()
        assert len(re.findall(r"Finished server process", proxy.log())) == count
