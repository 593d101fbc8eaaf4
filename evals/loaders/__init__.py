"""Probe-set loaders: ``benchmark:split`` specs resolved against a data folder (or the HF hub).

Known benchmarks are registered in :data:`evals.loaders.registry.BENCHMARKS`; a spec that is a
path to a ``.jsonl`` file (or ``custom:PATH``) loads the custom probe format.
"""

from evals.loaders.registry import BENCHMARKS, load_probes, parse_targets, split_names

__all__ = ["BENCHMARKS", "load_probes", "parse_targets", "split_names"]
