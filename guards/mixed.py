"""Mixed prompts: withhold the in-scope sentences of the last user message, keep the rest.

A message that asks a forbidden and an allowed question at once ("Where does Corwin Hale live?
And what is the capital of France?") defeats refusal-only unlearning (SepS): refusing everything
loses the allowed answer, answering everything leaks. When a conversation is in scope,
:func:`isolate` splits its last user message into sentences (:func:`guards.corpus.split_sentences`,
so short fragments stay attached to a neighbour), checks each sentence alone with the same
detector, then re-checks the whole conversation with the in-scope sentences removed. A sentence
that joins two requests ("What is the capital of Peru, and what happens to Ned Stark?") is cut
into its clauses first (:func:`clause_spans`). Only when
that remainder is out of scope is the message split; in every other case (a single sentence, no
sentence in scope on its own, every sentence in scope, or a remainder still in scope, e.g.
because earlier turns are what is in scope) :func:`isolate` returns ``None`` and the concept's
policy applies to the whole request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from guards.corpus import split_sentences
from guards.decision import Decision
from guards.detector import REFERRING_WORDS, Detector

_TOKEN = re.compile(r"\S+")
# A clause boundary inside a sentence: ";", or a comma and/or a conjunction followed by a word
# that opens a new question or request. The boundary text stays with the first clause.
_REQUEST_OPENERS = (
    "what|who|whom|whose|where|when|why|how|which|is|are|was|were|do|does|did|can|could|would|"
    "should|will|tell|give|list|explain|describe|name|write|show|summari[sz]e|translate"
)
_CLAUSE_BREAK = re.compile(
    rf"(?:;\s*|,\s*(?:(?:and|also|plus|then|but)\s+)?|\s+(?:and|also|plus|then|but)\s+)"
    rf"(?:(?:also|then|please)\s+)?(?=(?:{_REQUEST_OPENERS})\b)",
    re.IGNORECASE,
)
MIN_CLAUSE_WORDS = 3
# A sentence asks for something when it is a question or a cloze ("born in ___."), opens (or a
# label's text opens) with a request word, says it wants to know, learn or be told something
# ("I'm curious about..."), or sets the model a role ("You are Samwise...", "Let's write...").
_ASKS = re.compile(
    rf"\?|__|(?:^|:)\W*(?:(?:please|so|ok|okay|now|and|but|also)\W+)*(?:{_REQUEST_OPENERS})\b|"
    r"\b(?:(?:want|like|need|love|wish)\s+to\s+(?:know|learn|hear|understand|find\s+out)|"
    r"tell\s+me|explain|describe|give\s+me|show\s+me|teach\s+me|remind\s+me|walk\s+me|"
    r"(?:do|can|could|would|will)\s+you|wonder(?:ing)?|curious|instructions?|steps?|how\s+to|"
    r"recipe|you\s+(?:are|were|play|will\s+be)|pretend|act\s+as|imagine|let'?s|role[- ]?play|"
    r"in\s+character|stay\s+in)\b",
    re.IGNORECASE,
)
# What a cut clause leaves at the end of the kept text: "What is the capital of Peru, and".
_DANGLING = re.compile(r"(?:[\s,;]+(?:and|also|plus|then|but))?[\s,;]*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Part:
    """One sentence of the message, as the span ``text[start:end]``."""

    start: int
    end: int
    withheld: bool


@dataclass(frozen=True, slots=True)
class Partial:
    """A message split into parts to forward and parts to withhold.

    ``decision`` is the whole conversation's (in-scope) decision; ``turn`` the index of the split
    message among the guarded turns and ``text`` its full text, so a rewrite can check it edits
    that very message. The texts are the client's own words: never log them or put them in
    headers; :meth:`header_value` shows only counts.
    """

    decision: Decision
    turn: int
    text: str
    parts: tuple[Part, ...]

    @property
    def withheld(self) -> tuple[str, ...]:
        return tuple(self.text[p.start : p.end] for p in self.parts if p.withheld)

    @property
    def kept(self) -> str:
        """The message without its withheld parts; the original separators stay in place."""
        ends = [p.start for p in self.parts[1:]] + [len(self.text)]
        pieces = [self.text[p.start : end] for p, end in zip(self.parts, ends, strict=True)]
        kept = (piece for piece, part in zip(pieces, self.parts, strict=True) if not part.withheld)
        return _DANGLING.sub("", "".join(kept))

    @property
    def in_passing(self) -> bool:
        """Whether the concept is only *mentioned*, not asked about: every withheld part is a
        statement (:func:`asks`), and the kept request refers back to nothing (no pronoun or
        demonstrative). "I binged Game of Thrones last winter. Can you plan a trip to Belfast?"
        is; "Game of Thrones is great. Who dies in season one?" and "I loved Game of Thrones.
        Tell me how it ends." are not."""
        kept = {w.lower() for w in _TOKEN.findall(_DANGLING.sub("", self.kept))}
        refers = any(w.strip(".,;:!?\"'()").split("'")[0] in REFERRING_WORDS for w in kept)
        sentences = part_spans(self.text)
        withheld = [
            self.text[start:end]
            for part in self.parts
            if part.withheld
            for start, end in sentences
            if start <= part.start < end
        ]  # the whole sentence of each withheld clause: "What is X, and" asks
        return not refers and not any(asks(sentence) for sentence in withheld)

    def header_value(self) -> str:
        """The decision header with ``partial=<number of withheld parts>`` appended."""
        return f"{self.decision.header_value()}; partial={len(self.withheld)}"


def asks(text: str) -> bool:
    """Whether a sentence or clause asks for something (see ``_ASKS``), rather than states."""
    return _ASKS.search(text) is not None


def part_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence :func:`split_sentences` finds, located in ``text``.

    ``split_sentences`` only ever cuts at whitespace and keeps every word, so its n-th sentence
    is the next run of as many whitespace-separated tokens of ``text``.
    """
    tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
    spans: list[tuple[int, int]] = []
    at = 0
    for sentence in split_sentences(text):
        count = len(sentence.split())
        spans.append((tokens[at][0], tokens[at + count - 1][1]))
        at += count
    return spans


def clause_spans(text: str) -> list[tuple[int, int]]:
    """:func:`part_spans`, each sentence further cut where a new request starts inside it
    (after ";", or after a comma or "and"/"but"/"also" when a question or request word follows),
    keeping only clauses of at least ``MIN_CLAUSE_WORDS`` words (a shorter one stays attached)."""
    spans: list[tuple[int, int]] = []
    for start, end in part_spans(text):
        cuts = [start] + [start + m.end() for m in _CLAUSE_BREAK.finditer(text[start:end])]
        pieces = [(a, b) for a, b in zip(cuts, [*cuts[1:], end], strict=True) if a < b]
        merged: list[tuple[int, int]] = []
        for a, b in pieces:
            if merged and (
                _words(text, *merged[-1]) < MIN_CLAUSE_WORDS
                or _words(text, a, b) < MIN_CLAUSE_WORDS
            ):
                merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        spans.extend(_trimmed(text, a, b) for a, b in merged)
    return spans


def _words(text: str, start: int, end: int) -> int:
    return len(text[start:end].split())


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without surrounding whitespace or a trailing comma/semicolon."""
    while end > start and (text[end - 1].isspace() or text[end - 1] in ",;"):
        end -= 1
    while start < end and text[start].isspace():
        start += 1
    return start, end


def isolate(
    detector: Detector,
    turns: Sequence[str],
    last: int,
    decision: Decision,
    context: Sequence[str] = (),
) -> Partial | None:
    """Split ``turns[last]`` into withheld and kept parts, or ``None`` to apply the whole policy.

    ``context`` is the rest of the request the detector reads (:meth:`Detector.check`): the
    remainder is checked with it, so a split never forwards an in-scope context. Blocking (it
    runs the detector once per sentence and once more on the remainder).
    """
    if not decision.in_scope or not 0 <= last < len(turns):
        return None
    text = turns[last]
    spans = clause_spans(text)
    if len(spans) < 2:
        return None
    flags = [detector.check([text[start:end]]).in_scope for start, end in spans]
    if all(flags) or not any(flags):
        return None
    parts = tuple(Part(s, e, f) for (s, e), f in zip(spans, flags, strict=True))
    partial = Partial(decision, last, text, parts)
    remainder = [*turns[:last], partial.kept, *turns[last + 1 :]]
    if detector.check(remainder, context).in_scope:
        return None
    return partial
