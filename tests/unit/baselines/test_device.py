from __future__ import annotations

import pytest
import torch

from evals.baselines.device import autocast_for, select_device
from evals.baselines.errors import BaselineError


def test_auto_selects_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")


def test_auto_selects_cuda_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto").type == "cuda"


def test_explicit_cuda_without_gpu_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BaselineError, match="cuda"):
        select_device("cuda")


def test_cpu_autocast_keeps_float32() -> None:
    layer = torch.nn.Linear(4, 4)
    with autocast_for(torch.device("cpu")):
        out = layer(torch.ones(1, 4))
    assert out.dtype == torch.float32
