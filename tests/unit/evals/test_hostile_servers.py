"""The loopback launchers start real processes: the echo upstream comes back at the same address
after a restart, and a real ``nescio serve`` in front of it answers and stops on SIGTERM."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from evals.hostile.servers import EchoUpstream, ProxyServer, ServerError, ServerProcess, free_port

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _models(url: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/models", timeout=5.0, trust_env=False)


def test_echo_upstream_restarts_at_the_same_url(tmp_path: Path) -> None:
    with EchoUpstream(log_path=tmp_path / "echo.log") as upstream:
        url, first_pid = upstream.url, upstream.pid
        assert _models(url).json()["data"][0]["id"] == "echo"
        upstream.restart(pause=0.2)
        assert upstream.url == url
        assert upstream.pid != first_pid
        assert _models(url).status_code == 200
    assert not upstream.running
    with pytest.raises(httpx.ConnectError):
        _models(url)


def test_a_server_that_exits_early_raises_with_its_log(tmp_path: Path) -> None:
    server = ServerProcess(
        "crasher",
        [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
        port=free_port(),
        env={},
        ready_paths=["/"],
        startup_timeout=10.0,
        log_path=tmp_path / "crash.log",
    )
    with pytest.raises(ServerError, match=r"(?s)code 3.*boom"):
        server.start()
    assert not server.running


def test_proxy_serves_in_front_of_the_echo_upstream(tmp_path: Path) -> None:
    with (
        EchoUpstream() as upstream,
        ProxyServer(
            EXAMPLES / "concepts.yaml",
            upstream.url,
            env={"NESCIO_CACHE_DIR": str(tmp_path / "cache")},
            log_path=tmp_path / "proxy.log",
        ) as proxy,
    ):
        body = {"model": "echo", "messages": [{"role": "user", "content": "Capital of France?"}]}
        answer = httpx.post(
            f"{proxy.url}/v1/chat/completions", json=body, timeout=30.0, trust_env=False
        )
        assert answer.status_code == 200
        assert "Capital of France?" in answer.json()["choices"][0]["message"]["content"]
        ended = proxy.terminate(timeout=30.0)
    assert not ended.killed
    assert ended.seconds < 30.0
    assert "Uvicorn running" in proxy.log()


def test_proxy_without_concepts_is_a_pure_relay(tmp_path: Path) -> None:
    with (
        EchoUpstream() as upstream,
        ProxyServer(None, upstream.url, log_path=tmp_path / "relay.log") as relay,
    ):
        assert "--concepts" not in relay.command
        body = {"model": "echo", "messages": [{"role": "user", "content": "Harry Potter's owl?"}]}
        answer = httpx.post(
            f"{relay.url}/v1/chat/completions", json=body, timeout=30.0, trust_env=False
        )
        assert answer.status_code == 200
        assert "Harry Potter's owl?" in answer.json()["choices"][0]["message"]["content"]
