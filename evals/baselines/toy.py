"""A tiny random Llama and a toy tokenizer with a chat template, for tests and the GPU check.

They let the whole training path (template, answer-only labels, every method, save/reload) run
in seconds with no downloaded weights and no data directory.
"""

from __future__ import annotations

from typing import Any

from evals.baselines.data import QAExample

TOY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>"]


def toy_examples(prefix: str, count: int) -> list[QAExample]:
    """Distinct synthetic QA pairs; different prefixes give disjoint forget and retain sets."""
    return [
        QAExample(
            f"What does {prefix} author {i} write about?",
            f"The {prefix} author {i} writes {prefix} novels about {i * 7 % 13} rivers.",
        )
        for i in range(count)
    ]


def build_toy_tokenizer() -> Any:
    """A byte-level tokenizer (256 byte tokens + chat specials) with a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + sorted(byte_alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = TOY_CHAT_TEMPLATE
    return tokenizer


def build_tiny_llama(vocab_size: int, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Any:
    """A randomly initialised Llama; ~20M parameters at hidden_size=512, layers=6."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden_size // 16),
        num_key_value_heads=max(1, hidden_size // 16),
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=1,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)
