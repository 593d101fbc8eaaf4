"""The one training loop shared by fine-tuning and every unlearning method."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from evals.baselines.device import autocast_for, select_device
from evals.baselines.errors import BaselineError
from evals.baselines.formatting import EncodedExample, collate
from evals.baselines.methods.base import Batch

LossFn = Callable[[Any, Batch], torch.Tensor]


class TrainConfig(BaseModel):
    """Optimisation settings; an optimiser step sees batch_size * grad_accum examples."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=4, gt=0)
    grad_accum: int = Field(default=1, gt=0)
    lr: float = Field(default=1e-5, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    max_length: int = Field(default=256, gt=8)
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class TrainResult:
    """What a run did: optimiser steps, the loss after each, wall time and device."""

    steps: int
    device: str
    wall_s: float
    losses: list[float] = field(default_factory=list)


def _batches(
    examples: list[EncodedExample], size: int, rng: random.Random, pad_id: int
) -> Iterator[Any]:
    """Endless shuffled passes over the examples, one padded batch at a time."""
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order), size):
            yield collate([examples[i] for i in order[start : start + size]], pad_id)


def total_steps(config: TrainConfig, examples: int) -> int:
    """`max_steps` if set, else enough optimiser steps for `epochs` passes over the main set."""
    if config.max_steps is not None:
        return config.max_steps
    per_epoch = math.ceil(examples / (config.batch_size * config.grad_accum))
    return max(1, math.ceil(config.epochs * per_epoch))


def train(
    model: Any,
    loss_fn: LossFn,
    main: list[EncodedExample],
    config: TrainConfig,
    *,
    pad_id: int,
    retain: list[EncodedExample] | None = None,
    description: str = "train",
) -> TrainResult:
    """Minimise `loss_fn` with AdamW over shuffled batches of `main` (paired with `retain`).

    The model is moved to the selected device and left there in eval mode. On CUDA the forward
    passes run under bf16 autocast while weights and optimiser state stay float32. Training is
    deterministic for a given seed on the CPU.
    """
    if not main:
        raise BaselineError("no training examples")
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model.to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    main_iter = _batches(main, config.batch_size, rng, pad_id)
    retain_iter = _batches(retain, config.batch_size, rng, pad_id) if retain else None
    steps = total_steps(config, len(main))
    result = TrainResult(steps=steps, device=str(device), wall_s=0.0)
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=description, disable=not config.progress)
    for _ in bar:
        step_loss = 0.0
        for _micro in range(config.grad_accum):
            batch = Batch(
                next(main_iter).to(device),
                next(retain_iter).to(device) if retain_iter is not None else None,
            )
            with autocast_for(device):
                loss = loss_fn(model, batch) / config.grad_accum
            if not torch.isfinite(loss):
                raise BaselineError(f"{description}: loss became {loss.item()}")
            loss.backward()  # type: ignore[no-untyped-call]
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.losses.append(step_loss)
        bar.set_postfix(loss=f"{step_loss:.4f}")
    result.wall_s = time.perf_counter() - start
    model.eval()
    return result
