"""SimNPO (Fan et al., 2024): NPO without a reference model, on length-normalised likelihood."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from evals.baselines.methods.base import Batch, MethodParams, UnlearningMethod, register
from evals.baselines.methods.losses import answer_logprobs, mean_nll


class SimNPOParams(MethodParams):
    beta: float = 4.5
    delta: float = 0.0
    retain_weight: float = 1.0


@register
class SimNPO(UnlearningMethod[SimNPOParams]):
    """Loss = -(2/beta) * mean log sigmoid(beta * (NLL(y|x)/|y| - delta)) + retain_weight * NLL.

    Positive, and it falls as the per-token NLL of the forget answers rises; the length
    normalisation stops long answers from dominating, and no reference model is kept.
    """

    name = "simnpo"
    Params = SimNPOParams
    needs_retain = True

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        beta = self.params.beta
        logp_sum, counts = answer_logprobs(model, batch.main)
        per_token_nll = -logp_sum / counts.clamp(min=1)
        forget = -(2.0 / beta) * F.logsigmoid(beta * (per_token_nll - self.params.delta)).mean()
        if self.params.retain_weight == 0:
            return forget
        return forget + self.params.retain_weight * mean_nll(model, batch.retain_or_raise())
