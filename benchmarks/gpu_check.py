"""Prove the CUDA path of the weight-level baselines in one short, self-contained run.

Builds a ~16M-parameter random Llama and a byte-level toy tokenizer (no weights, no data dir),
fine-tunes it briefly on toy QA pairs, runs a few bf16-autocast steps of EVERY registered
unlearning method (each must move its own target: forget NLL up; for idk, refusals likelier),
saves and reloads a checkpoint on the device and compares logits, then prints per-method losses
and timings and `torch.cuda` facts. Exits non-zero on any failure.

    python benchmarks/gpu_check.py               # on the GPU machine (< 3 minutes on an H100)
    python benchmarks/gpu_check.py --device cpu  # the same checks on a CPU
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from evals.baselines.checkpoint import frozen_copy, load_model_and_tokenizer, save_checkpoint
from evals.baselines.device import select_device
from evals.baselines.formatting import EncodedExample, collate, encode_all
from evals.baselines.methods import METHODS, create_method
from evals.baselines.methods.losses import mean_nll
from evals.baselines.toy import build_tiny_llama, build_toy_tokenizer, toy_examples
from evals.baselines.trainer import TrainConfig, train

PARAMS: dict[str, dict[str, object]] = {"simnpo": {"delta": 1.0}}


def nll(model: Any, examples: list[EncodedExample], device: torch.device) -> float:
    with torch.no_grad():
        return float(mean_nll(model, collate(examples, 0).to(device)))


def cuda_facts(device: torch.device) -> str:
    if device.type != "cuda":
        return f"torch {torch.__version__}, device {device}"
    props = torch.cuda.get_device_properties(device)
    return (
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, {props.name}, "
        f"capability {props.major}.{props.minor}, {props.total_memory / 2**30:.1f} GiB, "
        f"bf16 {torch.cuda.is_bf16_supported()}, "
        f"max allocated {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--steps", type=int, default=8, help="unlearning steps per method")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args()
    device = select_device(args.device)
    print(cuda_facts(device))
    tokenizer = build_toy_tokenizer()
    forget = encode_all(tokenizer, toy_examples("forget", 16), 160)
    retain = encode_all(tokenizer, toy_examples("retain", 16), 160)
    model = build_tiny_llama(len(tokenizer), args.hidden, args.layers, seed=0)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    base = TrainConfig(max_steps=60, batch_size=8, lr=2e-3, device=str(device), progress=False)
    start = time.perf_counter()
    result = train(model, lambda m, b: mean_nll(m, b.main), forget + retain, base, pad_id=0)
    print(
        f"finetune: loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    failures = []
    config = TrainConfig(
        max_steps=args.steps, batch_size=8, lr=3e-4, device=str(device), progress=False
    )
    forget_before, retain_before = nll(model, forget, device), nll(model, retain, device)
    for name in sorted(METHODS):
        trial = copy.deepcopy(model)
        method = create_method(name, PARAMS.get(name, {}), frozen_copy(model))
        rewritten = encode_all(
            tokenizer, method.prepare_forget(toy_examples("forget", 16), data_dir=None, seed=0), 160
        )
        refusal_before = nll(model, rewritten, device)
        start = time.perf_counter()
        run = train(trial, method.loss, rewritten, config, pad_id=0, retain=retain)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        forget_after, retain_after = nll(trial, forget, device), nll(trial, retain, device)
        if name == "idk":
            ok = nll(trial, rewritten, device) < refusal_before
            verdict = "ok" if ok else "FAIL: refusals did not become likelier"
        else:
            ok = forget_after > forget_before
            verdict = "ok" if ok else "FAIL: forget NLL did not rise"
        print(
            f"{name:9s} loss {run.losses[0]:+.4f} -> {run.losses[-1]:+.4f}  "
            f"forget NLL {forget_before:.3f} -> {forget_after:.3f}  "
            f"retain NLL {retain_before:.3f} -> {retain_after:.3f}  "
            f"{seconds:.2f} s  {verdict}"
        )
        if not ok:
            failures.append(name)
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(model, tokenizer, Path(folder), {"check": "gpu"})
        reloaded, _ = load_model_and_tokenizer(Path(folder))
        reloaded.to(device)
        ids = collate(forget[:4], 0).input_ids.to(device)
        with torch.no_grad():
            same = torch.allclose(
                model(input_ids=ids).logits, reloaded(input_ids=ids).logits, atol=1e-4
            )
        print(f"checkpoint reload on {device}: {'same logits' if same else 'FAIL: logits differ'}")
        if not same:
            failures.append("checkpoint")
    print(cuda_facts(device))
    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("ALL CHECKS PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
