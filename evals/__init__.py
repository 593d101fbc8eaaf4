"""Nescio's evaluator: how well a system forgets, and how much it keeps, through the API alone.

Probe sets (RWKU, TOFU, WMDP, MMLU, custom JSONL) load into one :class:`evals.probes.Probe`
model; the runner sends them to any OpenAI-compatible endpoint (the raw model, the proxy, a
weight-unlearned model); metrics and reports compare the systems. Detection-only measurements
run the guard in-process, without generation.
"""
