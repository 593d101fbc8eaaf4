"""The learned detector: alias, name-mention and similarity evidence, weighed by a fitted model.

Same contract as :class:`guards.detector.EmbeddingAliasDetector` (``check(turns) -> Decision``),
but instead of one similarity against a per-concept threshold it builds, for every concept,
the feature vector of :mod:`guards.scorer` and reports the concept with the highest
probability. ``Decision.score`` is that probability and ``Decision.threshold`` the scorer's.

Segments are those of :func:`guards.detector.segments_of` plus every line of every turn (but of
later turns that only refer back, see :func:`guards.detector.refers_back`), so a question
wrapped in instructions ("Please briefly answer ... Question: ...") is also scored on its own.

The scorer was fitted on people. Concepts with ``match: centroid`` (topics) are scored as the
embedding detector scores them instead, by similarity to their centroid or fitted direction
against their own threshold, so one list can hold both people and topics. Aliases stay decisive
for both; the winner is the concept that clears its threshold by the widest margin.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from guards.concepts import ConceptList
from guards.corpus import NEGATIVE
from guards.decision import Action, Decision, Evidence
from guards.detector import (
    Segment,
    centroid_evidence,
    centroids,
    encode_segments,
    refers_back,
    segments_of,
)
from guards.encoder import Encoder
from guards.index import VectorIndex
from guards.names import Mentions
from guards.naming import ConceptNamer
from guards.scorer import FEATURES, LogisticScorer, Matrix

TOP_K = 64  # nearest evidence entries read per segment
NAME_SOURCES = frozenset({"name", "description"})
_LABEL = re.compile(r"^\s*(question|q|answer|a)\s*:\s*", re.IGNORECASE)
_COLUMN = {name: i for i, name in enumerate(FEATURES)}


def question_segments(turns: Sequence[str], context: Sequence[str] = ()) -> list[Segment]:
    """:func:`segments_of` plus each line (label such as ``Question:`` removed) of each turn and
    each context text."""
    segments = segments_of(turns, context)
    seen = {s.text for s in segments}
    for i, turn in enumerate([*turns, *context]):
        if 0 < i < len(turns) and refers_back(turn):
            continue
        for line in turn.splitlines():
            text = _LABEL.sub("", line).strip()
            if len(text.split()) >= 3 and text not in seen:
                seen.add(text)
                segments.append(Segment(text, i))
    return segments


class LearnedDetector:
    """Alias and full-name matching (decisive), then name mentions and FAISS similarities
    weighed by a scorer."""

    def __init__(
        self,
        concepts: ConceptList,
        encoder: Encoder,
        index: VectorIndex,
        scorer: LogisticScorer,
        namer: ConceptNamer | None = None,
    ) -> None:
        self.namer = namer or ConceptNamer(concepts)
        self._encoder = encoder
        self._index = index
        self._scorer = scorer
        self._ids = [c.id for c in concepts.concepts]
        self._actions: list[Action] = [concepts.policy_of(c).value for c in concepts.concepts]
        column = {cid: i for i, cid in enumerate(self._ids)}
        self._entry_concept = np.array(
            [column.get(e.concept_id, -1) for e in index.entries] + [-1], dtype=np.int64
        )
        self._entry_group = np.array(
            [_group(e.source) for e in index.entries] + [0], dtype=np.int64
        )
        self._entry_source = [e.source for e in index.entries]
        topics = [c for c in concepts.concepts if c.match == "centroid"]
        if len(topics) < len(concepts.concepts):  # the scorer decides the others
            scorer.check_encoder(encoder.name)
        self._central = np.array([column[c.id] for c in topics], dtype=np.int64)
        self._centroids = centroids(encoder, topics)
        self._thresholds = np.full(len(self._ids), scorer.threshold)
        self._thresholds[self._central] = [concepts.threshold_of(c) for c in topics]

    def features(self, turns: Sequence[str]) -> tuple[Matrix, list[Evidence | None], list[bool]]:
        """The ``(n_concepts, len(FEATURES))`` matrix, each concept's best embedding evidence,
        and whether the turns name each concept outright (alias or full name: decisive, so
        :meth:`check` never asks the scorer about it). One name pass serves both."""
        by_turn = self.namer.names.mentions_by_text(turns)
        matrix, best, _ = self._evidence(turns, by_turn)
        return matrix, best, self.namer.named(turns, by_turn)

    def _evidence(
        self,
        turns: Sequence[str],
        by_turn: Sequence[Sequence[Mentions]],
        context: Sequence[str] = (),
    ) -> tuple[Matrix, list[Evidence | None], NDArray[np.float64]]:
        """:meth:`features` (``by_turn``: the name mentions of the turns and then the context),
        and the centroid concepts' similarities (best segment each)."""
        matrix = np.zeros((len(self._ids), len(FEATURES)))
        mentions = self.namer.names.merged(by_turn)
        matrix[:, _COLUMN["name_bare"]] = [m.bare for m in mentions]
        matrix[:, _COLUMN["name_embedded"]] = [m.embedded for m in mentions]
        best: list[Evidence | None] = [None] * len(self._ids)
        central = np.full(len(self._central), -1.0)
        segments = question_segments(turns, context)
        if segments:
            vectors = encode_segments(self._encoder, segments)
            if self._index.entries:
                self._similarities(segments, vectors, matrix, best)
            if len(self._central):
                central, evidence = centroid_evidence(
                    segments, vectors, self._centroids, [self._ids[c] for c in self._central]
                )
                for c, found in zip(self._central, evidence, strict=True):
                    best[int(c)] = found
        for word in ("bare", "embedded"):
            matrix[:, _COLUMN[f"name_{word}_x_sim_corpus"]] = (
                matrix[:, _COLUMN[f"name_{word}"]] * matrix[:, _COLUMN["sim_corpus"]]
            )
        return matrix, best, central

    def check(self, turns: Sequence[str], context: Sequence[str] = ()) -> Decision:
        started = time.perf_counter()
        texts = [*turns, *context]
        if not self._ids or not any(t.strip() for t in texts):
            return Decision.allow(latency_ms=_ms(started))
        by_turn = self.namer.names.mentions_by_text(texts)
        matrix, best, central = self._evidence(turns, by_turn, context)
        namings = self.namer.first_namings(texts, by_turn)
        decisive = np.array([n is not None for n in namings], dtype=bool)
        scores = self._scorer.probabilities(matrix)
        scores[self._central] = central
        scores = np.where(decisive, 1.0, scores)
        winner = int(np.argmax(scores - self._thresholds))
        score = float(scores[winner])
        threshold = float(self._thresholds[winner])
        concept_id = self._ids[winner]
        named = tuple(n is not None for n in namings)
        if score < threshold:
            return Decision.allow(score, threshold, concept_id, _ms(started), named)
        evidence: list[Evidence] = []
        naming = namings[winner]
        if naming is not None:
            evidence.append(Evidence("alias", concept_id, 1.0, naming.turn, naming.source))
        found = best[winner]
        if found is not None:
            evidence.append(found)
        return Decision(
            action=self._actions[winner],
            concept_id=concept_id,
            score=score,
            threshold=threshold,
            evidence=tuple(evidence),
            latency_ms=_ms(started),
            named=named,
        )

    def _similarities(
        self,
        segments: list[Segment],
        vectors: NDArray[np.float32],
        matrix: Matrix,
        best: list[Evidence | None],
    ) -> None:
        sims, ids = self._index.search(vectors, TOP_K)
        concepts = self._entry_concept[ids]
        groups = self._entry_group[ids]
        n = len(self._ids)
        for row, segment in enumerate(segments):
            top: list[list[float]] = [[] for _ in range(n)]
            for col in range(ids.shape[1]):
                c = int(concepts[row, col])
                if c < 0:
                    continue
                sim = float(sims[row, col])
                group = int(groups[row, col])
                if group == 2:
                    matrix[c, _COLUMN["sim_negative"]] = max(
                        matrix[c, _COLUMN["sim_negative"]], sim
                    )
                    continue
                feature = _COLUMN["sim_name"] if group == 0 else _COLUMN["sim_corpus"]
                matrix[c, feature] = max(matrix[c, feature], sim)
                top[c].append(sim)
                current = best[c]
                if current is None or sim > current.score:
                    source = self._entry_source[int(ids[row, col])]
                    best[c] = Evidence("embedding", self._ids[c], sim, segment.turn, source)
            for c, values in enumerate(top):
                if values:
                    mean3 = sum(sorted(values, reverse=True)[:3]) / 3.0
                    matrix[c, _COLUMN["sim_top3"]] = max(matrix[c, _COLUMN["sim_top3"]], mean3)


def _group(source: str) -> int:
    """0: name/description, 1: corpus/examples (in scope), 2: hard negatives."""
    if source == NEGATIVE:
        return 2
    return 0 if source in NAME_SOURCES else 1


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
