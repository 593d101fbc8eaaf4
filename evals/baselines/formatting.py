"""Chat-template formatting with answer-only labels, and padding into batches.

Training sees exactly the prompt vLLM builds when serving the checkpoint (same chat template),
and only the answer tokens (plus the end-of-turn marker) carry a loss; prompt positions are -100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from evals.baselines.data import QAExample
from evals.baselines.errors import BaselineError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of prompt + answer and their labels (-100 on every prompt position)."""

    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class TokenBatch:
    """A right-padded batch ready for a causal LM forward pass."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device)
        )


def chat_prompt(tokenizer: Any, question: str) -> str:
    """The templated prompt for a user question, ending where the assistant's answer starts."""
    messages = [{"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return str(text)


def encode_example(tokenizer: Any, example: QAExample, max_length: int) -> EncodedExample:
    """Tokenize one QA pair through the chat template; labels mask the prompt with -100.

    The prompt and the completion are tokenized separately and concatenated, so the label
    boundary is exact even when a joint tokenization would merge tokens across it.
    """
    prompt = chat_prompt(tokenizer, example.question)
    messages = [
        {"role": "user", "content": example.question},
        {"role": "assistant", "content": example.answer},
    ]
    full = str(tokenizer.apply_chat_template(messages, tokenize=False))
    if not full.startswith(prompt):
        raise BaselineError("the tokenizer's chat template does not extend the generation prompt")
    prompt_ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    answer_ids = list(tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"])
    input_ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        raise BaselineError(
            f"max_length={max_length} leaves no answer token for question {example.question[:60]!r}"
        )
    return EncodedExample(input_ids, labels)


def encode_all(tokenizer: Any, examples: list[QAExample], max_length: int) -> list[EncodedExample]:
    """Encode every example (see `encode_example`)."""
    return [encode_example(tokenizer, example, max_length) for example in examples]


def collate(examples: list[EncodedExample], pad_id: int) -> TokenBatch:
    """Right-pad to the longest example; padding is masked out and labelled -100."""
    width = max(len(example.input_ids) for example in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(example.labels)
    return TokenBatch(ids, mask, labels)
