"""Likelihood helpers the method losses are built from."""

from __future__ import annotations

from typing import Any

import torch

from evals.baselines.formatting import IGNORE_INDEX, TokenBatch


def answer_logprobs(model: Any, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example sum of answer-token log-probabilities, and the answer-token counts."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    targets = batch.labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1)


def mean_nll(model: Any, batch: TokenBatch) -> torch.Tensor:
    """Token-averaged negative log-likelihood of the answers (the usual LM loss)."""
    logp_sum, counts = answer_logprobs(model, batch)
    return -logp_sum.sum() / counts.sum().clamp(min=1)
