"""Refusal tuning ("IDK"): teach the model to answer forget questions with "I don't know"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from evals.baselines.data import QAExample, load_idk_phrases, with_idk_answers
from evals.baselines.methods.base import Batch, MethodParams, UnlearningMethod, register
from evals.baselines.methods.losses import mean_nll


class IDKParams(MethodParams):
    retain_weight: float = 1.0


@register
class RefusalTuning(UnlearningMethod[IDKParams]):
    """Loss = NLL(forget question -> random refusal line) + retain_weight * NLL(retain).

    Refusals come from TOFU's `idontknow.txt` when the data dir has it, else from a built-in
    list; the original forget answers are never trained on, so their likelihood only falls.
    """

    name = "idk"
    Params = IDKParams
    needs_retain = True

    def prepare_forget(
        self, examples: list[QAExample], *, data_dir: Path | None, seed: int
    ) -> list[QAExample]:
        return with_idk_answers(examples, load_idk_phrases(data_dir), seed)

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        forget = mean_nll(model, batch.main)
        if self.params.retain_weight == 0:
            return forget
        return forget + self.params.retain_weight * mean_nll(model, batch.retain_or_raise())
