"""Weight-level unlearning baselines: fine-tune, unlearn and compare against the proxy.

An optional install extra (torch, transformers, peft). Each unlearning method only defines
its loss (`evals.baselines.methods`); one shared loop (`evals.baselines.trainer`) trains any of
them on CPU or CUDA and saves a Hugging Face checkpoint that vLLM serves as-is.
"""
