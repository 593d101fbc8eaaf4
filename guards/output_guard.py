"""Output-side leak check: does generated text name a forbidden concept the client never named?

Input detection cannot see a reverse query coming ("Who wrote Misery and The Shining?" never
names the target), but the answer gives it away. A :class:`LeakScanner` is built per request from
the conversation: it watches the concepts the conversation did *not* name by an alias or by the
full name with middle names (a client who named the concept already knows the name; an ICUL
answer saying "I don't know Elara Voss" is no leak) and reports the first one a text names, with the same
obfuscation-robust matching as the input side. Only full names and aliases count: single name
words ("King") are too common in ordinary answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from guards.concepts import Concept, ConceptList
from guards.normalize import AliasMatcher, NormalizedText

MIN_WINDOW = 256
SPREAD = 8  # how far apart an obfuscated name's letters may be spread ("H . a . r . r . y")


class LeakScanner:
    """Which watched concept, if any, a text names (full name or alias, obfuscation-robust)."""

    def __init__(self, concepts: ConceptList, aliases: AliasMatcher, named: Sequence[bool]) -> None:
        """``aliases`` must be compiled from ``concepts`` (a Guard keeps one: ``Guard.namer.aliases``);
        ``named`` says, per concept, whether the conversation named it (``Guard.named``)."""
        self._concepts = concepts
        self._aliases = aliases
        self._watched = [i for i, was_named in enumerate(named) if not was_named]
        self.window = max(MIN_WINDOW, SPREAD * aliases.longest)
        """Characters of text before a new piece that a stream check must look at again: any
        name ending in the piece starts within them (so a stream is scanned in linear time)."""

    @property
    def active(self) -> bool:
        return bool(self._watched)

    def leaked(self, text: str) -> Concept | None:
        if not text or not self._watched:
            return None
        view = NormalizedText.of(text)
        named = self._aliases.named_set(view)
        for concept in self._watched:
            if concept in named:
                return self._concepts.concepts[concept]
        return None

    def refusal(self, concept: Concept) -> str:
        return self._concepts.refusal_of(concept)
