"""Settings sources, the decision header switch, and the ``nescio serve`` command line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from proxy_fakes import FakeUpstream, proxy_client
from pydantic import ValidationError

from guards.guard import Guard
from proxy import cli
from proxy.settings import ProxySettings
from proxy.workers import worker_app

SECRETS = ("sk-client-a", "sk-client-b", "sk-admin-x", "sk-upstream-y")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No NESCIO_* variable from the machine running the tests leaks into these ones."""
    for name in list(os.environ):
        if name.startswith("NESCIO_"):
            monkeypatch.delenv(name)
    yield


def test_environment_variables_configure_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NESCIO_UPSTREAM_URL", "http://vllm:8000")
    monkeypatch.setenv("NESCIO_API_KEYS", '["sk-client-a", "sk-client-b"]')
    monkeypatch.setenv("NESCIO_ADMIN_KEY", "sk-admin-x")
    monkeypatch.setenv("NESCIO_UPSTREAM_API_KEY", "sk-upstream-y")
    monkeypatch.setenv("NESCIO_FAIL_OPEN", "true")
    monkeypatch.setenv("NESCIO_DECISION_HEADER", "false")
    monkeypatch.setenv("NESCIO_PORT", "9090")
    settings = ProxySettings()
    assert settings.upstream_url == "http://vllm:8000" and settings.port == 9090
    assert [k.get_secret_value() for k in settings.api_keys] == ["sk-client-a", "sk-client-b"]
    assert settings.admin_key is not None and settings.admin_key.get_secret_value() == "sk-admin-x"
    assert settings.fail_open and not settings.decision_header
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert not any(secret in text for secret in SECRETS)


def test_yaml_file_loads_and_ranks_below_env_and_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "nescio.yaml"
    config.write_text(
        "upstream_url: http://from-yaml:1\nport: 7000\nhost: 0.0.0.0\n"
        "api_keys: [sk-client-a]\nread_timeout: 12.5\n"
    )
    monkeypatch.setenv("NESCIO_CONFIG", str(config))
    from_yaml = ProxySettings()
    assert (from_yaml.upstream_url, from_yaml.port, from_yaml.read_timeout) == (
        "http://from-yaml:1",
        7000,
        12.5,
    )
    assert [k.get_secret_value() for k in from_yaml.api_keys] == ["sk-client-a"]
    monkeypatch.setenv("NESCIO_PORT", "7001")
    assert ProxySettings().port == 7001
    assert ProxySettings(port=7002).port == 7002
    monkeypatch.delenv("NESCIO_CONFIG")
    assert ProxySettings(config=config).host == "0.0.0.0"


def test_unknown_or_invalid_yaml_fields_are_named(tmp_path: Path) -> None:
    config = tmp_path / "nescio.yaml"
    config.write_text("upstream_ur1: http://typo:1\n")
    with pytest.raises(ValidationError, match="upstream_ur1"):
        ProxySettings(config=config)
    config.write_text("port: 99999\n")
    with pytest.raises(ValidationError, match="port"):
        ProxySettings(config=config)


REFUSED = {"model": "m", "messages": [{"role": "user", "content": "Is Hogwarts real?"}]}
ALLOWED = {"model": "m", "messages": [{"role": "user", "content": "Hello there"}]}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body", [REFUSED, ALLOWED, {**REFUSED, "stream": True}, {**ALLOWED, "stream": True}]
)
@pytest.mark.parametrize("header", [True, False])
async def test_decision_header_switch(
    guard: Guard, upstream: FakeUpstream, body: dict[str, Any], header: bool
) -> None:
    async with proxy_client(ProxySettings(decision_header=header), upstream, guard) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert ("x-nescio-decision" in response.headers) is header


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nescio")
    cli._register_serve(parser.add_subparsers(dest="command", required=True))
    return parser


def test_serve_help_teaches_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_parser().parse_args(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--concepts",
        "--upstream-url",
        "--config",
        "--fail-open",
        "NESCIO_CONCEPTS_PATH",
    ):
        assert option in out


def test_serve_builds_the_app_from_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        served.update(kwargs, settings=app.state.settings)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setenv("NESCIO_HOST", "0.0.0.0")
    args = serve_parser().parse_args(
        [
            "serve",
            "--upstream-url",
            "http://u:1",
            "--port",
            "9001",
            "--no-decision-header",
            "--fail-open",
        ]
    )
    assert args.handler(args) == 0
    settings: ProxySettings = served["settings"]
    assert (served["host"], served["port"]) == ("0.0.0.0", 9001)
    assert settings.upstream_url == "http://u:1" and settings.concepts_path is None
    assert not settings.decision_header and settings.fail_open


def test_nescio_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["serve", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "serve" in out and "NESCIO_" in out


FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "proxy" / "concepts.yaml"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "expected"), [("embedding", "EmbeddingAliasDetector"), ("learned", "LearnedDetector")]
)
async def test_the_detector_setting_picks_the_detector(kind: str, expected: str) -> None:
    from proxy.state import GuardState

    state = GuardState(ProxySettings(concepts_path=FIXTURE, detector=kind))  # type: ignore[arg-type]
    await state.load_initial()
    assert state.guard is not None and type(state.guard.detector).__name__ == expected
    decision = state.guard.check(["Tell me about Hogwarts."])
    assert decision.action == "refuse" and decision.concept_id == "harry-potter"


def test_serve_with_workers_hands_flags_and_shared_folders_to_the_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        served.update(kwargs, app=app)
        served["env"] = {k: v for k, v in os.environ.items() if k.startswith(("NESCIO_", "PROM"))}
        served["folders"] = [Path(served["env"][k]).is_dir() for k in ("NESCIO_STATE_DIR",)]

    for name in [k for k in os.environ if k.startswith(("NESCIO_", "PROMETHEUS_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the CLI writes the workers' env here
    args = serve_parser().parse_args(
        ["serve", "--workers", "3", "--upstream-url", "http://u:1", "--fail-open"]
    )
    assert args.handler(args) == 0
    assert served["app"] == "proxy.workers:worker_app" and served["factory"] is True
    assert served["workers"] == 3 and served["http"] == "httptools"
    env = served["env"]
    assert env["NESCIO_WORKERS"] == "3" and env["NESCIO_FAIL_OPEN"] == "true"
    assert env["NESCIO_UPSTREAM_URL"] == "http://u:1"
    assert served["folders"] == [True]
    assert not Path(env["NESCIO_STATE_DIR"]).exists()  # temporary: removed after the run
    assert not Path(env["PROMETHEUS_MULTIPROC_DIR"]).exists()
    flags = {k: v for k, v in env.items() if k.startswith("NESCIO_") and k != "NESCIO_STATE_DIR"}
    monkeypatch.setattr(os, "environ", flags)
    settings = worker_app().state.settings  # what a worker rebuilds from that environment
    assert settings.upstream_url == "http://u:1" and settings.fail_open and settings.workers == 3
