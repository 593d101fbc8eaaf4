"""Gradient Ascent: maximise the forget set's NLL (Jang et al., 2023)."""

from __future__ import annotations

from typing import Any

import torch

from evals.baselines.methods.base import Batch, MethodParams, UnlearningMethod, register
from evals.baselines.methods.losses import mean_nll


@register
class GradAscent(UnlearningMethod[MethodParams]):
    """Loss = -NLL(forget): always <= 0, and lowering it makes the forget answers unlikely."""

    name = "ga"

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        return -mean_nll(model, batch.main)
