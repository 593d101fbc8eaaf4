"""Scope detection: does a conversation fall inside a forbidden concept?

The whole conversation is scored, not just the last message: every user (and system) turn on its
own, consecutive turns joined (a question split across turns), and every turn of several
sentences sentence by sentence (a forbidden question with an unrelated one appended is still
seen on its own). A later turn that only refers back ("What else did he write?") is scored
joined with the turn before it, never on its own: alone it says nothing about whom it asks, and
generic questions like it sit close to many a biography. Two kinds of evidence are combined:

- alias matching on normalised text (see :mod:`guards.normalize`), and the full name written
  with middle names (see :mod:`guards.names`), decisive on their own unless the conversation
  reads more like one of the concept's own negatives than like anything in scope (a namesake
  the author listed: "Who is Michael B. Jordan?");
- a name given in part, misspelt or in pieces (:mod:`guards.partial_names`), which lowers the
  concept's similarity bar by ``PARTIAL_NAME_DISCOUNT``;
- embedding similarity to the concept's evidence (name, description, examples, forget-corpus
  sentences) with FAISS, discounted when the text sits closer to the concept's hard negatives;
  or, for concepts with ``match: centroid``, to the mean of their name, description and
  examples (see :class:`guards.concepts.Concept`), or to the fitted direction that replaces it
  (:mod:`guards.direction`);
- for segments not in English, their lead in a multilingual encoder's space
  (:mod:`guards.crosslingual`), when one is installed.

The winner is the concept that clears its own threshold by the widest margin.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from guards.concepts import Concept, ConceptList, Direction
from guards.corpus import NEGATIVE, split_sentences
from guards.crosslingual import MIN_LEAD, CrossLingualScorer, is_foreign
from guards.decision import Action, Decision, Evidence
from guards.direction import centroid_texts
from guards.encoder import Encoder
from guards.errors import ConceptFileError
from guards.evidence import EvidenceMatrix
from guards.index import VectorIndex
from guards.naming import ConceptNamer
from guards.normalize import readable

# How much lower the similarity bar is for a concept the conversation names in part
# (guards.partial_names: a distinctive name word, a misspelt or scattered name, an acronym).
PARTIAL_NAME_DISCOUNT = 0.15
CENTROID = "centroid"
MAX_REFERRING_WORDS = 12
REFERRING_WORDS = frozenset({
    "he", "she", "him", "her", "his", "hers", "they", "them", "their", "theirs", "it", "its",
    "this", "that", "these", "those", "there", "then"
})  # fmt: skip
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+)[\"'(]*[A-Za-z][A-Za-z'-]*")


class Detector(Protocol):
    """Decides whether texts (the conversation's guarded turns, in order) are in scope.

    ``context`` holds texts the client sent besides its questions (assistant and tool turns,
    tool definitions, template arguments; see :mod:`guards.chat`): each is scored on its own and
    by its sentences, never joined with a question turn, so a pronoun follow-up is not read
    together with an answer. ``check`` never raises for ordinary input; it is blocking and
    thread-safe, and returns a frozen :class:`Decision` whose evidence says which signal fired
    (a context text's ``turn`` index counts on after the question turns).
    """

    def check(self, turns: Sequence[str], context: Sequence[str] = ()) -> Decision: ...


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    turn: int


def refers_back(turn: str) -> bool:
    """Whether a turn has no content of its own: short, a pronoun or "that", and no name.

    "When was that?" and "Tell me more about her." qualify; "Did he write Carrie?" (a title),
    "What happened in 1999?" (a number) and "How do I bake bread?" (no reference) do not.
    Capitalised words other than sentence openers and "I" count as names.
    """
    turn = turn.replace("\u2019", "'")
    words = _WORD.findall(turn)
    if not words or len(words) > MAX_REFERRING_WORDS:
        return False
    inner = _WORD.findall(_SENTENCE_START.sub(" ", turn))
    if any(w.isdigit() or (w[0].isupper() and w.split("'")[0] != "I") for w in inner):
        return False
    return any(w.lower() in REFERRING_WORDS for w in words)


def segments_of(turns: Sequence[str], context: Sequence[str] = ()) -> list[Segment]:
    """Every turn (but later ones that only refer back), consecutive pairs, the whole
    conversation, and the sentences of every turn that has more than one; then every context
    text and its sentences, on their own, each distinct text once."""
    segments = [
        Segment(t, i) for i, t in enumerate(turns) if t.strip() and not (i and refers_back(t))
    ]
    for i in range(len(turns) - 1):
        segments.append(Segment(f"{turns[i]} {turns[i + 1]}", i + 1))
    if len(turns) > 2:
        segments.append(Segment(" ".join(turns), len(turns) - 1))
    for i, turn in enumerate(turns):
        sentences = split_sentences(turn)
        if len(sentences) > 1:
            segments.extend(Segment(s, i) for s in sentences)
    seen = {s.text for s in segments}  # context repeats itself (the same answer in every turn)
    for j, text in enumerate(context, start=len(turns)):
        if not text.strip():
            continue
        sentences = split_sentences(text)
        for piece in [text, *sentences] if len(sentences) > 1 else [text]:
            if piece not in seen:
                seen.add(piece)
                segments.append(Segment(piece, j))
    return segments


class EmbeddingAliasDetector:
    """The default detector: alias matching plus FAISS similarity with per-concept thresholds."""

    def __init__(
        self,
        concepts: ConceptList,
        encoder: Encoder,
        index: VectorIndex,
        namer: ConceptNamer | None = None,
        crosslingual: CrossLingualScorer | None = None,
    ) -> None:
        self._concepts = concepts
        self._crosslingual = crosslingual
        self._encoder = encoder
        self._ids = [c.id for c in concepts.concepts]
        self._column = {cid: i for i, cid in enumerate(self._ids)}
        self._thresholds = np.array([concepts.threshold_of(c) for c in concepts.concepts])
        self._actions: list[Action] = [concepts.policy_of(c).value for c in concepts.concepts]
        self._namer = namer or ConceptNamer(concepts)
        central = [c.match == "centroid" for c in concepts.concepts]
        self._central = np.flatnonzero(central)
        self._centroids = centroids(
            encoder, [c for c in concepts.concepts if c.match == "centroid"]
        )
        # Entries of centroid concepts are left out of the nearest-evidence scores.
        self._evidence = EvidenceMatrix(
            index.vectors(),
            index.entries,
            self._ids,
            NEGATIVE,
            excluded=[self._ids[c] for c in self._central],
        )

    def check(self, turns: Sequence[str], context: Sequence[str] = ()) -> Decision:
        started = time.perf_counter()
        if not self._ids or not any(t.strip() for t in [*turns, *context]):
            return Decision.allow(latency_ms=_ms(started))
        alias_hits = self._alias_evidence([*turns, *context])
        segments = segments_of(turns, context)
        scores, best, namesake = self._embedding_scores(segments)
        if self._crosslingual is not None:
            self._crosslingual_scores(segments, scores, best)
        alias_hits = [hit for hit in alias_hits if not namesake[self._column[hit.concept_id]]]
        for hit in alias_hits:
            scores[self._column[hit.concept_id]] = 1.0
        named_ids = {hit.concept_id for hit in alias_hits}
        named = tuple(cid in named_ids for cid in self._ids)
        partial = np.array(self._namer.partial.evidence([*turns, *context]), dtype=bool)
        thresholds = self._thresholds - PARTIAL_NAME_DISCOUNT * partial
        margins = scores - thresholds
        winner = int(np.argmax(margins))
        concept_id = self._ids[winner]
        if margins[winner] < 0:
            threshold = float(thresholds[winner])
            return Decision.allow(float(scores[winner]), threshold, concept_id, _ms(started), named)
        evidence = [e for e in alias_hits if e.concept_id == concept_id]
        if concept_id in best:
            evidence.append(best[concept_id])
        if partial[winner] and concept_id not in named_ids:
            evidence.append(Evidence("partial_name", concept_id, 1.0, 0, "name"))
        return Decision(
            action=self._actions[winner],
            concept_id=concept_id,
            score=float(scores[winner]),
            threshold=float(thresholds[winner]),
            evidence=tuple(evidence),
            latency_ms=_ms(started),
            named=named,
        )

    def _alias_evidence(self, turns: Sequence[str]) -> list[Evidence]:
        """One piece of evidence per concept named by an alias or by its full name."""
        return [
            Evidence("alias", concept_id, 1.0, naming.turn, naming.source)
            for concept_id, naming in zip(self._ids, self._namer.first_namings(turns), strict=True)
            if naming is not None
        ]

    def _embedding_scores(
        self, segments: list[Segment]
    ) -> tuple[np.ndarray, dict[str, Evidence], np.ndarray]:
        """Per concept: max over segments of the negative-discounted similarity, its evidence
        (for concepts that could win), and whether the closest negative is closer than any
        in-scope evidence (``namesake``)."""
        n_concepts = len(self._ids)
        scores = np.full(n_concepts, -1.0)
        best: dict[str, Evidence] = {}
        if not segments:
            return scores, best, np.zeros(n_concepts, dtype=bool)
        vectors = encode_segments(self._encoder, segments)
        if len(self._central):
            self._centroid_scores(segments, vectors, scores, best)
        positive, against = self._evidence.scores(vectors)
        namesake = against.max(axis=0) > positive.max(axis=0)
        effective = np.minimum(positive, 2 * positive - against)
        rows = np.argmax(effective, axis=0)
        top = effective[rows, np.arange(n_concepts)].astype(np.float64)
        raised = top > scores
        scores[raised] = top[raised]
        contenders = raised & (top >= self._thresholds - PARTIAL_NAME_DISCOUNT)
        for concept in (int(c) for c in np.flatnonzero(contenders)):
            row = int(rows[concept])
            cid = self._ids[concept]
            source = self._evidence.best_source(vectors[row], concept)
            best[cid] = Evidence("embedding", cid, scores[concept], segments[row].turn, source)
        return scores, best, namesake

    def _crosslingual_scores(
        self, segments: list[Segment], scores: np.ndarray, best: dict[str, Evidence]
    ) -> None:
        """Raise each concept's score by the lead of its best foreign segment: a lead of
        ``MIN_LEAD`` counts as reaching the concept's threshold, more as clearing it."""
        assert self._crosslingual is not None
        foreign = [s for s in segments if is_foreign(readable(s.text))]
        if not foreign:
            return
        unique = list({s.text: s for s in foreign}.values())
        leads = self._crosslingual.leads([s.text for s in unique])
        for concept, lead in enumerate(leads):
            score = self._thresholds[concept] + lead.lead - MIN_LEAD
            if lead.lead >= MIN_LEAD and score > scores[concept]:
                scores[concept] = score
                cid = self._ids[concept]
                best[cid] = Evidence(
                    "crosslingual", cid, lead.lead, unique[lead.segment].turn, "profile"
                )

    def _centroid_scores(
        self,
        segments: list[Segment],
        vectors: np.ndarray,
        scores: np.ndarray,
        best: dict[str, Evidence],
    ) -> None:
        """Per centroid concept: max over segments of the similarity to its centroid."""
        central, evidence = centroid_evidence(
            segments, vectors, self._centroids, [self._ids[c] for c in self._central]
        )
        scores[self._central] = central
        best.update((e.concept_id, e) for e in evidence)


def encode_segments(encoder: Encoder, segments: Sequence[Segment]) -> np.ndarray:
    """One row per segment, each distinct text encoded once (a conversation repeats itself: the
    same answer or system prompt in several turns, a sentence that is also a whole turn), as a
    reader sees it (:func:`guards.normalize.readable`: look-alike letters undone)."""
    texts = [readable(s.text) for s in segments]
    unique = list(dict.fromkeys(texts))
    if len(unique) == len(texts):
        return encoder.encode(texts)
    row = {text: i for i, text in enumerate(unique)}
    return encoder.encode(unique)[[row[t] for t in texts]]


def centroid_evidence(
    segments: Sequence[Segment],
    vectors: np.ndarray,
    centroid_vectors: np.ndarray,
    concept_ids: Sequence[str],
) -> tuple[np.ndarray, list[Evidence]]:
    """For each centroid concept (rows of ``centroid_vectors``, ids ``concept_ids``): the best
    segment's similarity and the evidence naming that segment's turn."""
    sims = vectors @ centroid_vectors.T
    rows = np.argmax(sims, axis=0)
    best = sims[rows, np.arange(len(concept_ids))].astype(np.float64)
    evidence = [
        Evidence("embedding", cid, float(best[j]), segments[rows[j]].turn, CENTROID)
        for j, cid in enumerate(concept_ids)
    ]
    return best, evidence


def centroids(encoder: Encoder, concepts: Sequence[Concept]) -> np.ndarray:
    """One unit vector per concept: its fitted ``direction`` when it has one, else the mean of
    its name, aliases, description and examples (:func:`guards.direction.centroid_texts`)."""
    rows = []
    for concept in concepts:
        if concept.direction is not None:
            rows.append(_checked_direction(concept.id, concept.direction, encoder))
            continue
        mean = encoder.encode(centroid_texts(concept)).mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.array(rows, dtype=np.float32).reshape(len(rows), encoder.dim)


def _checked_direction(concept_id: str, direction: Direction, encoder: Encoder) -> np.ndarray:
    """The direction as a vector, if it was fitted in this encoder's space (else the list is
    wrong for this guard: a concept-list error naming the field, not a guard failure)."""
    if direction.encoder != encoder.name or len(direction.vector) != encoder.dim:
        raise ConceptFileError(
            "concept list",
            f"fitted with encoder {direction.encoder!r} ({len(direction.vector)} dimensions), "
            f"this guard encodes with {encoder.name!r} ({encoder.dim}); calibrate again or "
            "remove it",
            field=f"concepts[{concept_id}].direction",
        )
    return np.asarray(direction.vector, dtype=np.float32)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
