"""Each method's loss has the right sign, and a few optimiser steps make the model forget."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from evals.baselines.checkpoint import frozen_copy
from evals.baselines.errors import BaselineError, UnknownMethodError
from evals.baselines.formatting import EncodedExample, collate, encode_all
from evals.baselines.methods import METHODS, Batch, create_method
from evals.baselines.methods.losses import mean_nll
from evals.baselines.toy import toy_examples
from evals.baselines.trainer import TrainConfig, train

STEP_PARAMS: dict[str, dict[str, object]] = {
    "ga": {},
    "graddiff": {},
    "npo": {},
    "simnpo": {"delta": 1.0},
    "idk": {},
    "rmu": {},
}


def nll(model: Any, examples: list[EncodedExample]) -> float:
    with torch.no_grad():
        return float(mean_nll(model, collate(examples, pad_id=0)))


def unlearn(
    model: Any, tokenizer: Any, name: str, retain: list[EncodedExample], steps: int = 10
) -> Any:
    method = create_method(name, STEP_PARAMS[name], frozen_copy(model))
    forget = method.prepare_forget(toy_examples("forget", 8), data_dir=None, seed=0)
    config = TrainConfig(max_steps=steps, batch_size=4, lr=1e-3, progress=False, device="cpu")
    train(model, method.loss, encode_all(tokenizer, forget, 160), config, pad_id=0, retain=retain)
    return model


def test_registry_lists_every_method() -> None:
    assert set(METHODS) == {"ga", "graddiff", "npo", "simnpo", "idk", "rmu"}


def test_unknown_method_and_bad_params_fail_clearly() -> None:
    with pytest.raises(UnknownMethodError, match="choose from"):
        create_method("nope")
    with pytest.raises(BaselineError, match="bad parameters for method 'npo'"):
        create_method("npo", {"betta": 1.0}, reference=object())
    with pytest.raises(BaselineError, match="reference"):
        create_method("npo")


def test_loss_signs_at_the_start(
    trained_model: Any,
    tokenizer: Any,
    forget_set: list[EncodedExample],
    retain_set: list[EncodedExample],
) -> None:
    batch = Batch(collate(forget_set, 0), collate(retain_set, 0))
    forget_nll, retain_nll = nll(trained_model, forget_set), nll(trained_model, retain_set)
    reference = frozen_copy(trained_model)

    def loss(name: str, **params: object) -> float:
        with torch.no_grad():
            return float(create_method(name, params, reference).loss(trained_model, batch))

    assert loss("ga") == pytest.approx(-forget_nll, rel=1e-4)
    assert loss("graddiff") == pytest.approx(retain_nll - forget_nll, abs=1e-4)
    assert loss("npo", beta=0.5, retain_weight=0.0) == pytest.approx(4 * math.log(2), rel=1e-4)
    assert 0 < loss("simnpo", retain_weight=0.0) < (2 / 4.5) * math.log(2)
    idk = create_method("idk", {"retain_weight": 0.0})
    refusals = idk.prepare_forget(toy_examples("forget", 8), data_dir=None, seed=0)
    idk_batch = Batch(collate(encode_all(tokenizer, refusals, 160), 0))
    with torch.no_grad():
        assert float(idk.loss(trained_model, idk_batch)) > forget_nll
    rmu = loss("rmu", steering_scale=2.0)
    assert rmu > 1.0


@pytest.fixture(scope="module")
def after_ga(_trained: Any, tokenizer: Any, retain_set: list[EncodedExample]) -> float:
    import copy

    return nll(unlearn(copy.deepcopy(_trained), tokenizer, "ga", retain_set), retain_set)


@pytest.mark.parametrize("name", sorted(STEP_PARAMS))
def test_steps_lower_forget_likelihood(
    name: str,
    trained_model: Any,
    tokenizer: Any,
    forget_set: list[EncodedExample],
    retain_set: list[EncodedExample],
    after_ga: float,
) -> None:
    before = nll(trained_model, forget_set)
    unlearn(trained_model, tokenizer, name, retain_set)
    assert nll(trained_model, forget_set) > before + 0.1
    if name in {"graddiff", "npo", "rmu"}:
        assert nll(trained_model, retain_set) < after_ga
