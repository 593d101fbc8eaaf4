"""Nescio's detection library: forbidden-concept lists, embeddings, retrieval, decisions, interventions.

`guards` never imports FastAPI or httpx; anyone (the proxy, the evaluator, a notebook) can use it
in-process. The usual entry point is :class:`guards.guard.Guard`.
"""

from guards.concepts import Concept, ConceptList, Policy, load_concepts, parse_concepts
from guards.decision import Decision, Evidence
from guards.errors import ConceptFileError, GuardError, NescioError

__all__ = [
    "Concept",
    "ConceptFileError",
    "ConceptList",
    "Decision",
    "Evidence",
    "GuardError",
    "NescioError",
    "Policy",
    "load_concepts",
    "parse_concepts",
]
