"""Representation Misdirection for Unlearning (Li et al., 2024, the WMDP paper)."""

from __future__ import annotations

from typing import Any

import torch

from evals.baselines.errors import BaselineError
from evals.baselines.formatting import IGNORE_INDEX, TokenBatch
from evals.baselines.methods.base import Batch, MethodParams, UnlearningMethod, register


class RMUParams(MethodParams):
    layer: int | None = None
    steering_scale: float = 4.0
    retain_weight: float = 10.0
    seed: int = 0


def _layer_output(model: Any, batch: TokenBatch, layer: int) -> torch.Tensor:
    out = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True
    )
    hidden: torch.Tensor = out.hidden_states[layer + 1]
    return hidden.float()


@register
class RMU(UnlearningMethod[RMUParams]):
    """Push layer-`layer` activations on forget answer tokens towards a fixed random direction
    c*u, and keep them on retain tokens equal to the frozen reference model's.

    Loss = MSE(h(forget), c*u) + retain_weight * MSE(h(retain), h_ref(retain)), both divided by
    the reference's mean squared activation so the scale is model independent; c is
    `steering_scale` times the reference's RMS activation norm, measured on the first batch.
    The layer defaults to a third of the depth, as in the paper (layer 7 of 32).
    Activations come from `output_hidden_states` rather than a hook, which also works through
    peft wrappers and leaves nothing registered on the model afterwards.
    """

    name = "rmu"
    Params = RMUParams
    needs_reference = True
    needs_retain = True
    _control: torch.Tensor | None = None
    _scale: torch.Tensor | None = None

    def _layer(self, model: Any) -> int:
        layers = int(model.config.num_hidden_layers)
        layer = self.params.layer if self.params.layer is not None else layers // 3
        if not 0 <= layer < layers:
            raise BaselineError(f"rmu layer must be in [0, {layers}), got {layer}")
        return layer

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        layer = self._layer(model)
        retain = batch.retain_or_raise()
        with torch.no_grad():
            reference = _layer_output(self.reference, retain, layer)
        if self._control is None or self._scale is None:
            self._scale = reference.pow(2).mean().detach()
            generator = torch.Generator().manual_seed(self.params.seed)
            direction = torch.rand(reference.shape[-1], generator=generator)
            direction = direction / direction.norm()
            rms_norm = (self._scale * reference.shape[-1]).sqrt()
            self._control = self.params.steering_scale * rms_norm * direction.to(reference.device)
        forget_mask = (batch.main.labels != IGNORE_INDEX).unsqueeze(-1)
        forget_h = _layer_output(model, batch.main, layer)
        forget_err = ((forget_h - self._control) ** 2 * forget_mask).sum()
        forget = forget_err / (forget_mask.sum() * forget_h.shape[-1]) / self._scale
        retain_mask = retain.attention_mask.unsqueeze(-1).to(reference.dtype)
        retain_h = _layer_output(model, retain, layer)
        retain_err = ((retain_h - reference) ** 2 * retain_mask).sum()
        retain_term = retain_err / (retain_mask.sum() * retain_h.shape[-1]) / self._scale
        return forget + self.params.retain_weight * retain_term
