"""Startup: the guard is built and warmed up before the proxy reports ready."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from guards.encoder import Encoder, Vectors
from proxy import state as state_module
from proxy.settings import ProxySettings
from proxy.state import WARM_UP, GuardState

pytestmark = pytest.mark.anyio
CONCEPTS_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "proxy" / "concepts.yaml"


class Recording:
    def __init__(self, inner: Encoder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.texts.extend(texts)
        return self.inner.encode(texts)


async def test_the_first_check_runs_before_ready(
    encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = Recording(encoder)
    monkeypatch.setattr(state_module, "load_encoder", lambda *_: recording)
    state = GuardState(ProxySettings(concepts_path=CONCEPTS_FILE))
    await state.load_initial()
    assert state.guard is not None
    assert WARM_UP["messages"][0]["content"] in recording.texts
