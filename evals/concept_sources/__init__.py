"""Concept lists built from a benchmark, so the guard can be evaluated on the benchmark's probes.

Each builder returns a :class:`BuiltConcepts`: the concepts plus forget-corpus files to write next
to the YAML. :func:`concept_ids_for` maps a probe to the concept(s) it is about, the link the
detection evaluation scores against.
"""

from evals.concept_sources.base import BuiltConcepts, concept_ids_for, write_concepts

__all__ = ["BuiltConcepts", "concept_ids_for", "write_concepts"]
