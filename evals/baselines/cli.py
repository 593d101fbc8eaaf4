"""`nescio finetune`, `nescio unlearn` and `nescio compare`: weight-level unlearning baselines.

Heavy imports (torch, transformers) happen inside the handlers so `nescio --help` stays fast.
Handlers are attached with `set_defaults(handler=...)`, take the parsed namespace and return an
exit code; `proxy.cli.main` turns a `BaselineError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evals.baselines.errors import BaselineError


def _train_args(parser: argparse.ArgumentParser, *, epochs: float, lr: float) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=float, default=epochs, help="passes over the main set")
    group.add_argument("--max-steps", type=int, help="optimiser steps (overrides --epochs)")
    group.add_argument("--lr", type=float, default=lr, help="AdamW learning rate")
    group.add_argument("--batch-size", type=int, default=4)
    group.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    group.add_argument("--max-length", type=int, default=256, help="tokens per example")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:N")
    group.add_argument("--lora-rank", type=int, help="train LoRA adapters (merged on save)")
    group.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--data-dir", type=Path, help="benchmark data (default $NESCIO_DATA_DIR)")


def _train_config(args: argparse.Namespace) -> Any:
    from evals.baselines.trainer import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        lr=args.lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )


def _data_dir(args: argparse.Namespace) -> Path:
    from evals.baselines.settings import BaselineSettings

    return Path(args.data_dir) if args.data_dir else BaselineSettings().data_dir


def parse_params(pairs: list[str]) -> dict[str, object]:
    """`key=value` strings to a dict; values are read as JSON when they parse, else as text."""
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BaselineError(f"--param expects key=value, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _run_finetune(args: argparse.Namespace) -> int:
    from evals.baselines.workflows import DataSelection, finetune

    data = DataSelection(_data_dir(args), args.split, args.authors, args.max_examples)
    info = finetune(Path(args.base), data, Path(args.out), _train_config(args), args.lora_rank)
    print(json.dumps(info, indent=2))
    return 0


def _run_unlearn(args: argparse.Namespace) -> int:
    from evals.baselines.workflows import DataSelection, unlearn

    data_dir = _data_dir(args)
    forget = DataSelection(data_dir, args.forget)
    retain = DataSelection(data_dir, args.retain, args.retain_authors) if args.retain else None
    info = unlearn(
        args.method,
        parse_params(args.param),
        Path(args.model),
        forget,
        retain,
        Path(args.out),
        _train_config(args),
        args.lora_rank,
    )
    print(json.dumps(info, indent=2))
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    import logging

    from pydantic import ValidationError

    from evals.baselines.compare import CompareConfig, run_compare

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    try:
        config = CompareConfig(
            data_dir=_data_dir(args),
            out=args.out,
            retain_model=args.retain_model,
            checkpoints=dict(_named_path(item) for item in args.checkpoint),
            original=args.original,
            proxy_policies=[] if args.no_proxy else (args.policy or ["refuse", "icul", "instruct"]),
            best_baseline=args.best_baseline,
            forget=args.forget,
            retain_split=args.retain,
            retain_authors=args.retain_authors,
            forget_items=args.forget_items,
            retain_items=args.retain_items,
            utility_items=args.utility_items,
            max_tokens=args.max_tokens,
            concurrency=args.concurrency,
            server=args.server,
            port=args.port,
            proxy_port=args.proxy_port,
        )
    except ValidationError as exc:
        problems = "; ".join(str(error["msg"]) for error in exc.errors())
        raise BaselineError(f"compare: {problems}") from exc
    run_compare(config)
    return 0


def _named_path(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise BaselineError(f"--checkpoint expects NAME=DIR, got {item!r}")
    return name, Path(path)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `finetune`, `unlearn` and `compare` subcommands."""
    ft = subparsers.add_parser(
        "finetune",
        help="fine-tune a chat model on TOFU so it knows the fictitious authors",
        description="Fine-tune a Hugging Face chat model on TOFU question-answer pairs (loss on "
        "answer tokens only, through the model's chat template) and save a checkpoint vLLM "
        "serves as-is. Train the target model on --split full and the retain model (the "
        "gold standard for forget quality) on the matching retainNN split. On a CPU use "
        "--authors to keep only the last N authors: `full --authors 6` is forget01's two "
        "authors plus the same four authors `retain99 --authors 4` holds.",
    )
    ft.add_argument("--data", choices=["tofu"], default="tofu", help="dataset")
    ft.add_argument("--split", default="full", help="full, retain90/95/99, forget01, ...")
    ft.add_argument("--base", required=True, help="Hugging Face model folder to start from")
    ft.add_argument("--out", required=True, help="output checkpoint folder")
    ft.add_argument("--authors", type=int, help="keep only the split's last N authors")
    ft.add_argument("--max-examples", type=int, help="cap the number of QA pairs")
    _train_args(ft, epochs=5.0, lr=1e-4)
    ft.set_defaults(handler=_run_finetune)

    un = subparsers.add_parser(
        "unlearn",
        help="run a weight-level unlearning method and save the unlearned checkpoint",
        description="Unlearn a TOFU forget split from a fine-tuned checkpoint with one method "
        "(ga, graddiff, npo, simnpo, idk, rmu). Methods that keep utility train on the retain "
        "split at the same time; pass --retain-authors with the same N the model was "
        "fine-tuned with. Method hyper-parameters: --param beta=0.1 --param retain_weight=1.",
    )
    un.add_argument("--method", required=True, help="ga, graddiff, npo, simnpo, idk or rmu")
    un.add_argument("--model", required=True, help="fine-tuned checkpoint folder")
    un.add_argument("--forget", default="forget01", help="forget01, forget05 or forget10")
    un.add_argument("--retain", help="retain split, e.g. retain99 (needed by most methods)")
    un.add_argument("--retain-authors", type=int, help="keep only the retain split's last N")
    un.add_argument("--param", action="append", default=[], help="method key=value")
    un.add_argument("--out", required=True, help="output checkpoint folder")
    _train_args(un, epochs=5.0, lr=1e-5)
    un.set_defaults(handler=_run_unlearn)

    cmp = subparsers.add_parser(
        "compare",
        help="serve each checkpoint with vLLM, put the proxy in front, score everything",
        description="For the retain model and every NAME=DIR checkpoint: start vLLM on it, "
        "measure forget/retain ROUGE-L, real-authors and world-facts accuracy (likelihood) "
        "and answer ROUGE-L, truth ratios, then TOFU forget quality (KS test p-value against "
        "the retain model's truth ratios). The proxy (`nescio serve`, concepts built from the "
        "forget split's authors) is put in front of the --original checkpoint once per "
        "--policy, and in front of the best baseline with the best policy (lowest forget "
        "ROUGE-L among rows keeping >= 90%% of the original's retain ROUGE-L), all through "
        "the same HTTP API. Writes raw per-item JSONL, results.json and results.md to --out; "
        "a rerun reuses finished rows.",
        epilog="example: nescio compare --retain-model runs/retain --checkpoint target=runs/target "
        "--checkpoint npo=runs/npo --checkpoint ga=runs/ga --out runs/compare",
    )
    cmp.add_argument("--retain-model", type=Path, required=True, help="the retain model folder")
    cmp.add_argument("--checkpoint", action="append", default=[], help="NAME=DIR, repeatable")
    cmp.add_argument(
        "--original", default="target", help="checkpoint the baselines were unlearned from"
    )
    cmp.add_argument(
        "--policy",
        action="append",
        choices=["refuse", "icul", "instruct"],
        help="proxy policy to grade in front of the original (repeatable; default: all three)",
    )
    cmp.add_argument("--no-proxy", action="store_true", help="grade the checkpoints only")
    cmp.add_argument("--best-baseline", help="checkpoint to put the proxy in front of")
    cmp.add_argument("--forget", default="forget01")
    cmp.add_argument("--retain", default="retain99", help="retain split for retain ROUGE-L")
    cmp.add_argument("--retain-authors", type=int, help="score only these last N retain authors")
    cmp.add_argument("--forget-items", type=int, help="score only the first N forget items")
    cmp.add_argument("--retain-items", type=int, default=40, help="retain questions to score")
    cmp.add_argument("--utility-items", type=int, default=50, help="per utility set")
    cmp.add_argument("--max-tokens", type=int, default=64, help="tokens per generated answer")
    cmp.add_argument("--concurrency", type=int, default=8, help="parallel requests")
    cmp.add_argument("--server", choices=["auto", "cpu", "gpu"], default="auto")
    cmp.add_argument("--port", type=int, default=8765, help="vLLM port")
    cmp.add_argument("--proxy-port", type=int, default=8766)
    cmp.add_argument("--out", type=Path, required=True, help="results folder")
    cmp.add_argument("--data-dir", type=Path, help="benchmark data (default $NESCIO_DATA_DIR)")
    cmp.set_defaults(handler=_run_compare)
