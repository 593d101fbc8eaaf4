from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from evals.baselines.data import QAExample
from evals.baselines.errors import BaselineError
from evals.baselines.formatting import IGNORE_INDEX, collate, encode_example
from evals.baselines.methods.losses import mean_nll


def test_labels_cover_exactly_the_answer_and_end_marker(tokenizer: Any) -> None:
    example = QAExample("Who wrote it?", "Nobody did.")
    encoded = encode_example(tokenizer, example, 200)
    answer = [tok for tok, lab in zip(encoded.input_ids, encoded.labels, strict=True) if lab >= 0]
    assert tokenizer.decode(answer) == "Nobody did.<|im_end|>\n"
    prompt_len = encoded.labels.index(next(lab for lab in encoded.labels if lab >= 0))
    assert tokenizer.decode(encoded.input_ids[:prompt_len]).endswith("<|im_start|>assistant\n")
    assert all(lab == IGNORE_INDEX for lab in encoded.labels[:prompt_len])


def test_truncation_that_removes_the_answer_is_an_error(tokenizer: Any) -> None:
    with pytest.raises(BaselineError, match="max_length"):
        encode_example(tokenizer, QAExample("A long question " * 5, "yes"), 20)


def test_collate_pads_with_masked_ignored_positions(tokenizer: Any) -> None:
    short = encode_example(tokenizer, QAExample("Q?", "A."), 200)
    long = encode_example(tokenizer, QAExample("A longer question?", "A longer answer."), 200)
    batch = collate([short, long], pad_id=0)
    n = len(short.input_ids)
    assert batch.input_ids.shape == (2, len(long.input_ids))
    assert batch.attention_mask[0, n:].sum() == 0
    assert (batch.labels[0, n:] == IGNORE_INDEX).all()


def test_loss_matches_hf_loss_and_ignores_prompt_positions(
    tokenizer: Any, trained_model: Any
) -> None:
    batch = collate(
        [
            encode_example(tokenizer, QAExample(f"Question {i}?", f"Answer {i}."), 200)
            for i in (1, 22)
        ],
        pad_id=0,
    )
    hf = trained_model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels
    ).loss
    assert torch.allclose(mean_nll(trained_model, batch), hf, atol=1e-5)

    width, vocab = batch.input_ids.shape[1], len(tokenizer)
    logits = torch.randn(2, width, vocab, requires_grad=True)
    fake = SimpleNamespace(logits=logits)
    mean_nll(lambda **_: fake, batch).backward()
    assert logits.grad is not None
    predicts_answer = batch.labels[:, 1:] != IGNORE_INDEX
    grad_norm = logits.grad[:, :-1].abs().sum(-1)
    assert (grad_norm[~predicts_answer] == 0).all()
    assert (grad_norm[predicts_answer] > 0).all()
