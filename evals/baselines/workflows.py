"""The `finetune` and `unlearn` commands as plain functions (the CLI only parses arguments)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evals.baselines.checkpoint import (
    frozen_copy,
    load_model_and_tokenizer,
    save_checkpoint,
    with_lora,
)
from evals.baselines.data import QAExample, last_authors, load_qa_jsonl, tofu_path
from evals.baselines.device import select_device
from evals.baselines.errors import BaselineError, UnknownMethodError
from evals.baselines.formatting import encode_all
from evals.baselines.methods import METHODS, create_method
from evals.baselines.methods.losses import mean_nll
from evals.baselines.trainer import TrainConfig, TrainResult, train


@dataclass(frozen=True)
class DataSelection:
    """Which TOFU examples to use: a split, optionally only its last N authors, capped."""

    data_dir: Path
    split: str
    authors: int | None = None
    max_examples: int | None = None

    def load(self) -> list[QAExample]:
        examples = last_authors(load_qa_jsonl(tofu_path(self.data_dir, self.split)), self.authors)
        return examples[: self.max_examples] if self.max_examples else examples


def _finish(
    model: Any,
    tokenizer: Any,
    out: Path,
    result: TrainResult,
    info: dict[str, Any],
    start: float,
) -> dict[str, Any]:
    """Save the checkpoint with its run info; `wall_s` covers loading and training."""
    model.to("cpu")
    run_info = {
        **info,
        "wall_s": round(time.perf_counter() - start, 2),
        "steps": result.steps,
        "device": result.device,
        "train_wall_s": round(result.wall_s, 2),
        "first_loss": result.losses[0],
        "final_loss": result.losses[-1],
    }
    save_checkpoint(model, tokenizer, out, run_info)
    return run_info


def finetune(
    base: Path, data: DataSelection, out: Path, config: TrainConfig, lora_rank: int | None = None
) -> dict[str, Any]:
    """Teach `base` the selected TOFU QA pairs (answer-only NLL) and save a checkpoint."""
    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(base)
    if lora_rank:
        model = with_lora(model, lora_rank)
    examples = encode_all(tokenizer, data.load(), config.max_length)
    result = train(
        model,
        lambda m, batch: mean_nll(m, batch.main),
        examples,
        config,
        pad_id=tokenizer.pad_token_id,
        description=f"finetune {data.split}",
    )
    info = {
        "command": "finetune",
        "base": str(base),
        "data": {**asdict(data), "data_dir": str(data.data_dir)},
        "examples": len(examples),
        "lora_rank": lora_rank,
        "train": config.model_dump(),
    }
    return _finish(model, tokenizer, out, result, info, start)


def unlearn(
    method_name: str,
    params: dict[str, object],
    model_dir: Path,
    forget: DataSelection,
    retain: DataSelection | None,
    out: Path,
    config: TrainConfig,
    lora_rank: int | None = None,
) -> dict[str, Any]:
    """Run one registered unlearning method on `model_dir` and save the unlearned checkpoint.

    `wall_s` in the returned (and saved) run info covers loading and training.
    """
    start = time.perf_counter()
    cls = METHODS.get(method_name)
    if cls is None:
        raise UnknownMethodError(f"unknown method {method_name!r}; choose from {sorted(METHODS)}")
    model, tokenizer = load_model_and_tokenizer(model_dir)
    reference = None
    if cls.needs_reference:
        reference = frozen_copy(model).to(select_device(config.device))
    method = create_method(method_name, params, reference)
    if method.needs_retain and retain is None:
        raise BaselineError(f"method '{method_name}' needs --retain")
    if lora_rank:
        model = with_lora(model, lora_rank)
    forget_examples = method.prepare_forget(
        forget.load(), data_dir=forget.data_dir, seed=config.seed
    )
    retain_examples = retain.load() if retain is not None and method.needs_retain else None
    result = train(
        model,
        method.loss,
        encode_all(tokenizer, forget_examples, config.max_length),
        config,
        pad_id=tokenizer.pad_token_id,
        retain=encode_all(tokenizer, retain_examples, config.max_length)
        if retain_examples
        else None,
        description=f"unlearn {method_name}",
    )
    info = {
        "command": "unlearn",
        "method": method_name,
        "params": method.params.model_dump(),
        "model": str(model_dir),
        "forget": forget.split,
        "retain": retain.split if retain is not None else None,
        "retain_authors": retain.authors if retain is not None else None,
        "lora_rank": lora_rank,
        "train": config.model_dump(),
    }
    return _finish(model, tokenizer, out, result, info, start)
