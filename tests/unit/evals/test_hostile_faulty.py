"""The faulty upstream fails as its model name says (the harness's stream-fault cases rely on it)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from evals.hostile.faulty_upstream import Cut, create_faulty_app


def _events(model: str) -> list[str]:
    with TestClient(create_faulty_app()) as client:
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        response = client.post("/v1/chat/completions", json=body)
    return [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]


def test_control_stream_ends_with_done() -> None:
    assert _events("ok")[-1] == "[DONE]"


def test_no_done_stream_ends_without_done() -> None:
    events = _events("no-done")
    assert "[DONE]" not in events and '"finish_reason": "stop"' in events[-1]


def test_malformed_stream_carries_an_event_that_is_not_json() -> None:
    assert "{this is not json" in _events("malformed")


def test_drop_cuts_the_body() -> None:
    with pytest.raises(Cut):
        _events("drop")
