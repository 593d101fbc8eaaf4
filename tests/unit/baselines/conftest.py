"""Shared fixtures: a toy tokenizer, a tiny Llama that has memorised toy forget/retain sets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

pytest.importorskip("transformers")

from evals.baselines.formatting import EncodedExample, encode_all
from evals.baselines.methods.losses import mean_nll
from evals.baselines.toy import build_tiny_llama, build_toy_tokenizer, toy_examples
from evals.baselines.trainer import TrainConfig, train

MAX_LENGTH = 160


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return build_toy_tokenizer()


@pytest.fixture(scope="session")
def forget_set(tokenizer: Any) -> list[EncodedExample]:
    return encode_all(tokenizer, toy_examples("forget", 8), MAX_LENGTH)


@pytest.fixture(scope="session")
def retain_set(tokenizer: Any) -> list[EncodedExample]:
    return encode_all(tokenizer, toy_examples("retain", 8), MAX_LENGTH)


@pytest.fixture(scope="session")
def _trained(tokenizer: Any, forget_set: Any, retain_set: Any) -> Any:
    model = build_tiny_llama(len(tokenizer), hidden_size=32, layers=2, seed=0)
    config = TrainConfig(max_steps=60, batch_size=8, lr=3e-3, progress=False, device="cpu")
    train(model, lambda m, b: mean_nll(m, b.main), forget_set + retain_set, config, pad_id=0)
    return model


@pytest.fixture
def trained_model(_trained: Any) -> Any:
    """A fresh copy of a tiny model fine-tuned on both toy sets (it 'knows' the forget set)."""
    return copy.deepcopy(_trained)
