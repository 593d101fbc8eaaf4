from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from evals.errors import RunDirError
from evals.probes import Probe, ProbeFormat, ProbeKind
from evals.runner.client import GenerationConfig, RetryPolicy, System
from evals.runner.run import ITEMS_FILE, load_items, run_probes

NO_WAIT = RetryPolicy(attempts=4, base_delay_s=0.0, max_delay_s=0.0)


def probes(n: int) -> list[Probe]:
    return [
        Probe(id=f"p{i}", probe_set="custom:t", kind=ProbeKind.FORGET, query=f"q{i}",
              prompt=f"question {i}", answers=("a",))
        for i in range(n)
    ]  # fmt: skip


def completion(text: str, decision: str | None = None) -> httpx.Response:
    headers = {"X-Nescio-Decision": decision} if decision else {}
    body = {
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
    }
    return httpx.Response(200, json=body, headers=headers)


class FakeServer:
    """Answers chat completions, failing the first ``failures[prompt]`` requests for a prompt."""

    def __init__(self, failures: dict[str, list[Any]] | None = None) -> None:
        self.failures = failures or {}
        self.asked: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        body = json.loads(request.content)
        self.bodies.append(body)
        prompt = body["messages"][0]["content"]
        self.asked[prompt] += 1
        pending = self.failures.get(prompt, [])
        if pending:
            failure = pending.pop(0)
            if isinstance(failure, int):
                return httpx.Response(failure, json={"error": {"message": "busy"}})
            raise failure
        return completion(f"answer to {prompt}", "allow")


def run(tmp_path: Path, server: FakeServer, items: list[Probe], **kw: Any) -> Any:
    return run_probes(
        items, [System("raw", "http://raw")], tmp_path, generation=GenerationConfig(**kw),
        retry=NO_WAIT, transport=httpx.MockTransport(server), progress=False,
    )  # fmt: skip


def test_retries_429_5xx_and_connection_errors_then_succeeds(tmp_path: Path) -> None:
    server = FakeServer({"question 0": [429, 503, httpx.ConnectError("refused")]})
    stats = run(tmp_path, server, probes(1))
    assert stats.errors == 0 and server.asked["question 0"] == 4
    (record,) = load_items(tmp_path)
    assert record["attempts"] == 4 and record["output"] == "answer to question 0"
    assert record["decision"] == "allow"


def test_gives_up_after_the_retry_budget_and_records_the_error(tmp_path: Path) -> None:
    server = FakeServer({"question 0": [500, 500, 500, 500, 500]})
    stats = run(tmp_path, server, probes(1))
    assert stats.errors == 1 and server.asked["question 0"] == 4
    assert "gave up after 4 tries: HTTP 500" in load_items(tmp_path)[0]["error"]


def test_client_errors_are_not_retried(tmp_path: Path) -> None:
    server = FakeServer({"question 0": [400]})
    run(tmp_path, server, probes(1))
    assert server.asked["question 0"] == 1
    assert load_items(tmp_path)[0]["status"] == 400


def test_resume_skips_answered_items_and_retries_failed_ones(tmp_path: Path) -> None:
    first = FakeServer({"question 2": [400]})
    stats = run(tmp_path, first, probes(4))
    assert (stats.answered, stats.errors) == (4, 1)
    second = FakeServer()
    stats = run(tmp_path, second, probes(5))
    assert stats.done_before == 3 and stats.answered == 2
    assert set(second.asked) == {"question 2", "question 4"}
    records = load_items(tmp_path)
    assert len(records) == 5 and all(r["error"] is None for r in records)
    assert len((tmp_path / ITEMS_FILE).read_text().splitlines()) == 6


def test_interrupted_run_resumes_from_the_lines_already_written(tmp_path: Path) -> None:
    run(tmp_path, FakeServer(), probes(3))
    lines = (tmp_path / ITEMS_FILE).read_text().splitlines()
    (tmp_path / ITEMS_FILE).write_text("\n".join(lines[:2]) + "\n")
    server = FakeServer()
    stats = run(tmp_path, server, probes(3))
    assert stats.answered == 1 and sum(server.asked.values()) == 1


def test_changed_generation_settings_are_refused(tmp_path: Path) -> None:
    run(tmp_path, FakeServer(), probes(1))
    with pytest.raises(RunDirError, match="generation settings differ"):
        run(tmp_path, FakeServer(), probes(1), max_tokens=7)


def test_multiple_choice_asks_for_logprobs_and_records_them(tmp_path: Path) -> None:
    mc = Probe(id="mc", probe_set="custom:t", kind=ProbeKind.UTILITY, format=ProbeFormat.MC,
               query="q", prompt="q", choices=("x", "y"), answer_index=1)  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["logprobs"] is True and body["model"] == "given"
        top = [{"token": "B", "logprob": -0.2}, {"token": "A", "logprob": -1.9}]
        choice = {
            "message": {"content": "B"},
            "logprobs": {"content": [{"token": "B", "top_logprobs": top}]},
        }
        return httpx.Response(200, json={"choices": [choice]})

    run_probes([mc], [System("raw", "http://raw", model="given")], tmp_path,
               generation=GenerationConfig(), transport=httpx.MockTransport(handler),
               progress=False)  # fmt: skip
    assert load_items(tmp_path)[0]["top_logprobs"] == {"B": -0.2, "A": -1.9}


def test_completions_mode_and_system_parsing(tmp_path: Path) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        assert json.loads(request.content)["prompt"] == "question 0"
        return httpx.Response(200, json={"choices": [{"text": " done"}]})

    system = System.parse("raw=http://127.0.0.1:9/v1#m")
    assert (system.base_url, system.model) == ("http://127.0.0.1:9", "m")
    run_probes(probes(1), [System.parse("raw=http://x")], tmp_path,
               generation=GenerationConfig(mode="completions"),
               transport=httpx.MockTransport(handler), progress=False)  # fmt: skip
    assert seen == ["/v1/models", "/v1/completions"]
    assert load_items(tmp_path)[0]["output"] == " done"


def test_backoff_grows_exponentially_and_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=5, base_delay_s=1.0, max_delay_s=5.0)
    assert 0.5 <= policy.delay(1, None) <= 1.0
    assert 2.0 <= policy.delay(3, None) <= 4.0
    assert policy.delay(10, None) == 5.0
    assert policy.delay(1, "3") == 3.0
    assert policy.delay(1, "60") == 5.0


def test_duplicate_probes_are_asked_once(tmp_path: Path) -> None:
    server = FakeServer()
    run(tmp_path, server, probes(2) + probes(2))
    assert sum(server.asked.values()) == 2
