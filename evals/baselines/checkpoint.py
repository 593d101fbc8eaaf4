"""Loading a base model and saving a checkpoint that vLLM and `from_pretrained` serve as-is."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from evals.baselines.errors import BaselineError

RUN_INFO_FILE = "nescio_run.json"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_model_and_tokenizer(path: Path) -> tuple[Any, Any]:
    """A float32 causal LM and its tokenizer from a local Hugging Face folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise BaselineError(f"{path}: not a Hugging Face model folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        raise BaselineError(f"{path}: tokenizer has no chat template")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    import torch

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tokenizer


def frozen_copy(model: Any) -> Any:
    """A deep copy with gradients off, used as the fixed reference by NPO and RMU."""
    reference = copy.deepcopy(model)
    reference.eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


def with_lora(model: Any, rank: int) -> Any:
    """Wrap the model in LoRA adapters on every attention and MLP projection."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=LORA_TARGETS)
    return get_peft_model(model, config)


def save_checkpoint(model: Any, tokenizer: Any, out: Path, run_info: dict[str, Any]) -> None:
    """Save safetensors weights, the tokenizer (with its chat template) and `nescio_run.json`.

    LoRA adapters are merged first, so the folder is a plain model any server loads directly.
    """
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / RUN_INFO_FILE).write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")


def read_run_info(path: Path) -> dict[str, Any]:
    """The `nescio_run.json` a training command wrote next to the checkpoint, or {}."""
    info_path = path / RUN_INFO_FILE
    if not info_path.is_file():
        return {}
    loaded = json.loads(info_path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}
