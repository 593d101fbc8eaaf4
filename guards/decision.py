"""The detector's verdict: frozen, explainable, and safe to show (ids and scores, never contents)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EvidenceKind = Literal["alias", "embedding", "crosslingual", "partial_name"]
Action = Literal["allow", "refuse", "icul", "instruct"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One signal that pointed at a concept.

    ``turn`` is the index of the conversation segment (user turn, or a window of turns) that
    fired; ``source`` says what it matched: an alias, an in-scope example, the description, or
    a forget-corpus sentence. The matched text itself is deliberately not kept.
    """

    kind: EvidenceKind
    concept_id: str
    score: float
    turn: int
    source: str


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a conversation is in a concept's scope, why, and what the policy says to do.

    ``score`` and ``threshold`` are those of the winning concept (or of the closest one when the
    action is ``allow``), so a near miss can be read straight off the decision. ``named`` says,
    per concept of the list in order, whether the checked texts named it outright (alias or full
    name, :meth:`guards.naming.ConceptNamer.named`), so the output guard need not read them again;
    empty when the detector did not look (no text, or a detector that does not report it).
    """

    action: Action
    concept_id: str | None = None
    score: float = 0.0
    threshold: float = 0.0
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)
    latency_ms: float = 0.0
    named: tuple[bool, ...] = ()

    @property
    def in_scope(self) -> bool:
        return self.action != "allow"

    def header_value(self) -> str:
        """The ``X-Nescio-Decision`` header: ``allow`` or ``refuse; concept=id; score=0.83``."""
        if not self.in_scope:
            return "allow"
        kinds = ",".join(sorted({e.kind for e in self.evidence}))
        return f"{self.action}; concept={self.concept_id}; score={self.score:.3f}; evidence={kinds}"

    @staticmethod
    def allow(
        score: float = 0.0,
        threshold: float = 0.0,
        concept_id: str | None = None,
        latency_ms: float = 0.0,
        named: tuple[bool, ...] = (),
    ) -> Decision:
        """Out of scope; ``concept_id`` names the nearest concept, for diagnostics only."""
        return Decision("allow", concept_id, score, threshold, (), latency_ms, named)
