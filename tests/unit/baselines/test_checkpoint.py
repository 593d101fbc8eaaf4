from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from evals.baselines.checkpoint import (
    load_model_and_tokenizer,
    read_run_info,
    save_checkpoint,
    with_lora,
)
from evals.baselines.formatting import collate
from evals.baselines.methods.losses import mean_nll
from evals.baselines.trainer import TrainConfig, train


def logits(model: Any, batch_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model(input_ids=batch_ids).logits
    return out


def test_checkpoint_reloads_with_same_logits_and_chat_template(
    trained_model: Any, tokenizer: Any, forget_set: Any, tmp_path: Path
) -> None:
    ids = collate(forget_set[:2], pad_id=0).input_ids
    save_checkpoint(trained_model, tokenizer, tmp_path, {"method": "ga", "wall_s": 1.5})
    assert (tmp_path / "model.safetensors").is_file()
    model, reloaded_tokenizer = load_model_and_tokenizer(tmp_path)
    assert torch.allclose(logits(model, ids), logits(trained_model, ids), atol=1e-5)
    assert reloaded_tokenizer.chat_template == tokenizer.chat_template
    assert read_run_info(tmp_path) == {"method": "ga", "wall_s": 1.5}


def test_lora_training_is_merged_into_a_plain_checkpoint(
    trained_model: Any, tokenizer: Any, forget_set: Any, tmp_path: Path
) -> None:
    ids = collate(forget_set[:2], pad_id=0).input_ids
    lora = with_lora(trained_model, rank=4)
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert trainable < sum(p.numel() for p in lora.parameters()) / 2
    config = TrainConfig(max_steps=3, batch_size=4, lr=1e-2, progress=False, device="cpu")
    train(lora, lambda m, b: -mean_nll(m, b.main), forget_set, config, pad_id=0)
    expected = logits(lora, ids)
    save_checkpoint(lora, tokenizer, tmp_path, {})
    model, _ = load_model_and_tokenizer(tmp_path)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert torch.allclose(logits(model, ids), expected, atol=1e-4)
