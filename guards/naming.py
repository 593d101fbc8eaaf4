"""Which concepts a conversation names outright, and where.

A concept is *named* when a turn contains one of its aliases (obfuscation-robust matching,
:mod:`guards.normalize`) or its full name with middle names (:mod:`guards.names`: "Stephen Edwin
King"). Both detectors treat that as decisive, and the output guard stops watching a concept the
client named itself. A name given in part, misspelt or in pieces is weaker evidence
(:mod:`guards.partial_names`). One :class:`ConceptNamer`, compiled once per Guard, answers it for all of
them, so the three can never disagree on what "named" means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from guards.concepts import ConceptList
from guards.names import Mentions, NameMatcher
from guards.normalize import AliasMatcher, NormalizedText, readable
from guards.partial_names import PartialNames

ALIAS = "alias"
FULL_NAME = "full name"


@dataclass(frozen=True, slots=True)
class Naming:
    """The first turn that names a concept, and how (an alias wins over the full name)."""

    turn: int
    source: str  # ALIAS or FULL_NAME


class ConceptNamer:
    """Every concept's aliases and name words compiled once, in concept order."""

    def __init__(self, concepts: ConceptList) -> None:
        forms = [c.surface_forms for c in concepts.concepts]
        self._count = len(forms)
        self.aliases = AliasMatcher(forms)
        self.names = NameMatcher(forms)
        self.partial = PartialNames(concepts)

    def first_namings(
        self, turns: Sequence[str], by_turn: Sequence[Sequence[Mentions]] | None = None
    ) -> list[Naming | None]:
        """Per concept: the first turn naming it, or ``None``. ``by_turn``: the turns'
        :meth:`NameMatcher.mentions_by_text`, when the caller has them already."""
        views = [NormalizedText.of(t) for t in turns]
        written = [readable(t) for t in turns]
        if by_turn is None:
            by_turn = self.names.mentions_by_text(turns)
        namings: list[Naming | None] = [None] * self._count
        for turn, (view, mentions) in enumerate(zip(views, by_turn, strict=True)):
            for concept in self.aliases.named_set(view, written[turn]):
                if namings[concept] is None:
                    namings[concept] = Naming(turn, ALIAS)
            for concept, mention in enumerate(mentions):
                if mention.full and namings[concept] is None:
                    namings[concept] = Naming(turn, FULL_NAME)
        return namings

    def named(
        self, turns: Sequence[str], by_turn: Sequence[Sequence[Mentions]] | None = None
    ) -> list[bool]:
        """Per concept: does any turn name it? (``by_turn`` as in :meth:`first_namings`.)"""
        return [n is not None for n in self.first_namings(turns, by_turn)]
