"""Real servers on loopback for the integration tests: vLLM CPU and the Nescio proxy.

`vllm_server` starts the real vLLM CPU build once per session (SmolLM2-135M-Instruct, from
`$NESCIO_HOME`, set up by `deploy/local/setup.sh`). When it is not set up the tests skip
with instructions, except under `CI=true`, where a missing server is a failure: CI must never
pass by skipping its real-server tests. `proxy_factory` runs the proxy app in-process with
uvicorn (one server per policy, reused across the session) pointed at that vLLM.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import httpx
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE_VLLM = REPO_ROOT / "deploy" / "local" / "serve_vllm.py"
VLLM_READY_TIMEOUT_S = 180.0
PROXY_READY_TIMEOUT_S = 120.0
POLICIES = ("refuse", "icul", "instruct")
CONCEPT_ID = "harry-potter"
REFUSAL = "I can't discuss the wizarding world of Harry Potter."
PROMPTS = {
    "concept_id": CONCEPT_ID,
    "refusal": REFUSAL,
    "in_scope": "Which Hogwarts house was Harry Potter sorted into, and who is his best friend?",
    "out_of_scope": "What is the capital of France?",
}


def load_serve_vllm() -> ModuleType:
    """Import deploy/local/serve_vllm.py (the launcher the local stack uses) by path."""
    spec = importlib.util.spec_from_file_location("nescio_serve_vllm", SERVE_VLLM)
    if spec is None or spec.loader is None:
        pytest.fail(f"cannot load {SERVE_VLLM}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def unavailable(reason: str) -> NoReturn:
    """Skip locally; fail under CI=true so CI cannot go green without its real-server tests."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: real-server tests must run)")
    pytest.skip(reason)


def concept_file(policy: str) -> dict[str, Any]:
    """A one-concept list whose in-scope prompts the test model answers readily."""
    return {
        "version": 1,
        "concepts": [
            {
                "id": CONCEPT_ID,
                "name": "Harry Potter",
                "aliases": ["Hogwarts", "Hermione Granger", "Ron Weasley", "Dumbledore"],
                "description": "The Harry Potter books and films: characters, plot, Hogwarts.",
                "examples": [
                    "Who is Harry Potter's best friend?",
                    "What house is Hermione Granger in at Hogwarts?",
                    "Who killed Dumbledore?",
                    "What is the name of Harry Potter's owl?",
                ],
                "negatives": [
                    "What is the capital of France?",
                    "How do owls hunt at night?",
                    "Who wrote The Lord of the Rings?",
                ],
                "policy": policy,
                "threshold": 0.5,
                "refusal": REFUSAL,
            }
        ],
    }


@pytest.fixture(scope="session")
def prompts() -> dict[str, str]:
    """The test concept's id and refusal, plus one prompt inside and one outside its scope."""
    return dict(PROMPTS)


@pytest.fixture(scope="session")
def vllm_launch() -> Any:
    """The local stack's vLLM launch settings (model folder, CPU interpreter), checked present."""
    serve = load_serve_vllm()
    launch = serve.VllmLaunch(port=serve.free_port())
    problems: list[str] = launch.missing()
    if problems:
        unavailable("; ".join(problems) + f" — {serve.SETUP_HINT}")
    return launch


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A function returning a free loopback port."""
    port: Callable[[], int] = load_serve_vllm().free_port
    return port


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[str]:
    """Base URL (no /v1) of a real vLLM CPU server, stopped (SIGTERM, then SIGKILL) at the end."""
    serve = load_serve_vllm()
    launch = serve.VllmLaunch(port=serve.free_port())
    problems: list[str] = launch.missing()
    if problems:
        unavailable("; ".join(problems) + f" — {serve.SETUP_HINT}")
    proc = serve.start(launch)
    try:
        try:
            serve.wait_ready(launch, proc, VLLM_READY_TIMEOUT_S)
        except serve.VllmError as error:
            pytest.fail(str(error))
        yield launch.base_url
    finally:
        serve.stop(proc)


class ProxyServers:
    """Starts one in-process proxy per policy on demand and stops them all at the end."""

    def __init__(self, upstream_url: str, workdir: Path) -> None:
        self._upstream_url = upstream_url
        self._workdir = workdir
        self._urls: dict[str, str] = {}
        self._running: list[tuple[Any, threading.Thread]] = []

    def __call__(self, policy: str = "refuse") -> str:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
        if policy not in self._urls:
            self._urls[policy] = self._start(policy)
        return self._urls[policy]

    def _start(self, policy: str) -> str:
        import uvicorn

        from proxy.app import create_app
        from proxy.settings import ProxySettings

        path = self._workdir / f"concepts-{policy}.yaml"
        path.write_text(yaml.safe_dump(concept_file(policy), sort_keys=False))
        settings = ProxySettings(
            upstream_url=self._upstream_url,
            concepts_path=path,
            cache_dir=self._workdir / "cache",
        )
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"proxy-{policy}", daemon=True)
        thread.start()
        self._running.append((server, thread))
        deadline = time.monotonic() + PROXY_READY_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"proxy ({policy}) did not start within {PROXY_READY_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        wait_for_ready(f"{url}/ready", deadline)
        return url

    def close(self) -> None:
        for server, _ in self._running:
            server.should_exit = True
        for _, thread in self._running:
            thread.join(timeout=15)


def wait_for_ready(url: str, deadline: float) -> None:
    """Poll a readiness URL until it answers 200 or the deadline passes."""
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.2)
    pytest.fail(f"{url} not ready in time; last answer: {last}")


@pytest.fixture(scope="session")
def proxy_factory(
    vllm_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], str]]:
    """`proxy_factory(policy)` -> base URL of a proxy with the test concept under that policy."""
    try:
        importlib.import_module("proxy.app")
    except ImportError as error:
        unavailable(f"proxy.app is not importable ({error}); install the project: `make setup`")
    servers = ProxyServers(vllm_server, tmp_path_factory.mktemp("proxy"))
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="session")
def proxy_server(proxy_factory: Callable[[str], str]) -> str:
    """Base URL of the proxy with the refuse policy in front of the real vLLM."""
    return proxy_factory("refuse")
