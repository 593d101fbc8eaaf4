"""Gradient Difference: ascend on the forget set, descend on the retain set (Liu et al., 2022)."""

from __future__ import annotations

from typing import Any

import torch

from evals.baselines.methods.base import Batch, MethodParams, UnlearningMethod, register
from evals.baselines.methods.losses import mean_nll


class GradDiffParams(MethodParams):
    retain_weight: float = 1.0


@register
class GradDiff(UnlearningMethod[GradDiffParams]):
    """Loss = -NLL(forget) + retain_weight * NLL(retain)."""

    name = "graddiff"
    Params = GradDiffParams
    needs_retain = True

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        forget = -mean_nll(model, batch.main)
        return forget + self.params.retain_weight * mean_nll(model, batch.retain_or_raise())
