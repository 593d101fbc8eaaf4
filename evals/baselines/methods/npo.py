"""Negative Preference Optimization (Zhang et al., 2024), with an optional retain NLL term."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from evals.baselines.methods.base import Batch, MethodParams, UnlearningMethod, register
from evals.baselines.methods.losses import answer_logprobs, mean_nll


class NPOParams(MethodParams):
    beta: float = 0.1
    retain_weight: float = 1.0


@register
class NPO(UnlearningMethod[NPOParams]):
    """Loss = -(2/beta) * mean log sigmoid(-beta * log(p_theta(y|x) / p_ref(y|x))) on the forget
    set, plus retain_weight * NLL(retain) (open-unlearning's NPO; retain_weight=0 is pure NPO).

    The forget term is always positive, equals (2/beta) log 2 when the model still matches its
    reference, and is bounded below by 0, so unlike gradient ascent it slows down instead of
    diverging as the forget answers become unlikely.
    """

    name = "npo"
    Params = NPOParams
    needs_reference = True
    needs_retain = True

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        beta = self.params.beta
        current, _ = answer_logprobs(model, batch.main)
        with torch.no_grad():
            reference, _ = answer_logprobs(self.reference, batch.main)
        forget = -(2.0 / beta) * F.logsigmoid(-beta * (current - reference)).mean()
        if self.params.retain_weight == 0:
            return forget
        return forget + self.params.retain_weight * mean_nll(model, batch.retain_or_raise())
